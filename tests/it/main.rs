//! One integration binary: every test starts its own server on 127.0.0.1 port 0 and talks to it
#![allow(unreachable_pub)]
//! over real sockets.

mod support;

mod audit;
mod bad_input;
mod cli;
mod delivery;
mod resume;
mod shutdown;
mod slow_consumer;
mod subscriber_auth;
