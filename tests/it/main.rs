//! One integration binary: every test starts its own server on 127.0.0.1 port 0 and talks to it
//! over real sockets; vendor tests start their own real vendor (sockudo) and, where needed, a
//! fault-injecting HTTP proxy in front of it.
#![allow(unreachable_pub)]

mod support;

mod ably_ingress;
mod admin;
mod audit;
mod bad_input;
mod canary;
mod cli;
mod dashboard;
mod delivery;
mod demo;
mod engine_breaker;
mod failover;
mod hostile;
mod image;
mod layering;
mod publish_wire;
mod pusher_ingress;
mod pusher_ws;
mod reload;
mod resume;
mod scale;
mod secure_defaults;
mod self_path;
mod shutdown;
mod slow_consumer;
mod sse_wire;
mod subscriber_auth;
mod tenant_routes;
mod tenants;
mod transports;
mod vendor_ably;
mod vendor_auth;
mod vendor_faults;
mod vendor_pusher;
mod vendor_signal;
mod vendor_tls;
