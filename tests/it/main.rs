//! Integration tests. Each test starts its own real components on 127.0.0.1 ports chosen by
//! the OS: a real vendor (`sockudo`, Pusher- and Ably-compatible), and where needed a
//! fault-injecting HTTP proxy in front of it.

mod support;

mod canary;
mod vendor_ably;
mod vendor_faults;
mod vendor_pusher;
