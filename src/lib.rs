//! understudy: a realtime push fallback proxy.
//!
//! Backends publish over HTTP; understudy sequences every event per channel, keeps a bounded
//! history, forwards to a realtime vendor on bounded lanes, and when the vendor degrades delivers
//! through its own WebSocket, SSE and polling transports, so a client can switch path and resume
//! with nothing lost and nothing duplicated.
//!
//! # Layers (diagram: docs/architecture.md)
//! Imports run one way: a file names its own layer and the layers below it, never one above
//! (held by `tests/it/layering.rs`, which maps each file to its layer by path). Bottom first:
//! 1. **domain**: [`core`]; failover's pure machine (`failover::{machine, health, route, mode}`);
//!    the vocabulary they read (`upstream::{error, priority, observation}`, `tenant::id`). No
//!    sockets, no runtime I/O (also held by the test).
//! 2. **settings**: the settings types lower layers read (`config::{secret, apps, engine}`).
//! 3. **services**: [`engine`], [`upstream`] (vendor adapters and lanes; the lanes report
//!    observations on a channel whose message type is upstream's own), [`lifecycle`].
//! 4. **failover**: the driver, canaries and tenant vendor sets, which drive the lanes.
//! 5. **identity**: [`auth`], [`tenant`].
//! 6. **config**: parses and validates the whole file, naming each module's settings.
//! 7. **edges**: [`transport`], [`ops`], [`web`]; the handles they share are
//!    [`transport::AppState`], built by `app`.
//! 8. **wiring**: [`app`], [`telemetry`], and the fuzz harness (`fuzzing`, under `--cfg fuzzing`).
//!
//! # Layout
//! - [`app`]: wires everything; owns the listeners, background tasks and the shutdown sequence;
//!   `app::reload` applies a re-read configuration (SIGHUP, `POST /admin/reload`).
//! - [`config`]: the embedded default file, overrides, validation into typed settings, the
//!   source a node re-reads, and what a reload changes.
//! - [`auth`]: publisher keys, subscriber tokens, named admin tokens, the `[[apps]]` of the
//!   Pusher and Ably protocols, and Ably keys and tokens (`auth::ably`).
//! - [`core`]: channel names, events, sequencing, epochs, history, idempotency, cursors, registry.
//!   Plain Rust, no sockets.
//! - [`engine`]: memory or Redis: where channels are sequenced, kept and fanned out; with Redis,
//!   several nodes share them and this node's registry mirrors the channels its clients watch,
//!   and a breaker refuses publishes at once while Redis does not answer.
//! - [`transport`]: the public API's edges (publish; the `[[apps]]` ingresses, the Pusher HTTP
//!   API in `pusher_http` and the Ably REST ingress in `ably_rest`, and `app_publish`, the one
//!   call they publish through; WebSocket, SSE, poll, route, vendor auth, client.js, and Pusher
//!   protocol 7 for pusher-js on `/app/{key}` in `pusher_ws`), the wire types, the one error
//!   mapping, per-connection control signals, and what every connection is held to (listener caps
//!   and the new-subscriber rate in `admission`, read and write deadlines in `deadline`, refusals a
//!   browser can read in `later`), and the handles every edge shares (`state`: [`AppState`]).
//! - [`lifecycle`]: readiness, drain and the goodbye to long-lived connections.
//! - [`ops`]: the admin listener: status, modes, maintenance, drain, audit trail, dashboard,
//!   metrics.
//! - [`telemetry`]: structured logs.
//! - [`tenant`]: the customers sharing a node: which channels each owns, their publisher keys,
//!   apps and quotas, and what each uses now (`tenant::Usage`: publish buckets, connection
//!   seats), held against them at every ingress by `transport::tenancy`.
//! - [`upstream`]: forwarding to realtime vendors (Pusher, Ably, signed webhook) on bounded lanes,
//!   and what the lanes observe (`upstream::observation`), read by the failover driver.
//! - [`failover`]: vendor health, the failover state machine, operator mode and the route; a
//!   vendor set per tenant with vendor credentials of its own, modes and routes per tenant.
//! - [`web`]: the clinic demo served under `/demo` when `demo.enabled` (pages embedded from
//!   `src/web/demo/`, and the demo's small backend). The browser client `src/web/understudy.js`
//!   is served by [`transport`].

// The public API is what the binary (`main.rs`, `admin_cli`), `loadtest/`, `tests/` and `fuzz/`
// name: the root re-exports below; `core`'s channel names, events and read positions; failover's
// route, canary and observations; `upstream`'s adapters, lanes, signing, HTTP client and TLS (the
// vendor tests drive them against sockudo); `ops::audit` (the audit CLI and its tests); `config`;
// `tenant`; `telemetry::init`; `app::reload::reload_on`. Every other module and item is
// `pub(crate)`, so the compiler reports what nothing uses.
pub mod app;
pub(crate) mod auth;
pub mod config;
pub mod core;
pub mod engine;
pub mod failover;
#[cfg(fuzzing)]
pub mod fuzzing;
pub(crate) mod lifecycle;
pub mod ops;
pub mod telemetry;
pub mod tenant;
pub mod transport;
pub mod upstream;
pub(crate) mod web;

pub use app::{bind, App, Listeners};
pub use config::Config;
pub use transport::AppState;
