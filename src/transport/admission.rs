//! Admitting a connection to a listener: at most `cap` open at once, and at most `per_address`
//! from one client address. A connection past either cap is answered at the accept with a short
//! `503 too_many_connections` JSON response written straight on the socket, then closed: no task
//! is spawned and its descriptor is given back at once. The caps in force take the process's
//! descriptor limit into account (see [`effective_caps`]). New subscriber connections are also
//! admitted at a bounded rate (`rate`).

mod rate;

pub(crate) use rate::NewSubscribers;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::ops::metrics::Metrics;

/// Descriptors kept out of both listeners' caps: Redis, vendor sockets, audit segments, the
/// listeners themselves, and what a WebSocket upgrade or a log rotation briefly needs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Which listener a cap belongs to, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listener {
    Public,
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Admin => "admin",
        }
    }
}

/// Why a connection was refused at the accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its cap of open connections.
    ListenerFull,
    /// The client's address holds its cap of open connections.
    AddressFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListenerFull => "listener_full",
            Self::AddressFull => "address_full",
        }
    }
}

/// One listener's open connections against its caps.
#[derive(Debug)]
pub struct Admission {
    listener: Listener,
    /// Most connections open at once; never 0.
    cap: usize,
    /// Most connections open at once from one address; 0: no such cap.
    per_address: usize,
    /// Connections admitted and not yet closed (a permit each).
    open: AtomicUsize,
    /// Open connections per client address; only kept while `per_address` is set. An address
    /// leaves the map with its last connection, so the map holds at most `cap` entries.
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place on its listener, given back on drop. It travels with the connection's
/// socket, WebSocket upgrades included.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

/// What `/admin/status` shows of a listener.
#[derive(Debug, Serialize)]
pub struct AdmissionStatus {
    pub listener: Listener,
    pub max_connections: usize,
    /// `null`: no per-address cap.
    pub max_connections_per_address: Option<usize>,
    pub open_connections: usize,
}

impl Admission {
    pub fn new(listener: Listener, cap: usize, per_address: usize) -> Arc<Self> {
        let cap = cap.max(1);
        Metrics::connection_cap(listener, "listener").set(cap as f64);
        Metrics::connection_cap(listener, "address").set(per_address as f64);
        Arc::new(Self {
            listener,
            cap,
            per_address,
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a place for a connection from `address`, or says why there is none.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Permit, Refusal> {
        let refuse = |why: Refusal| {
            Metrics::connection_refused(self.listener, why.as_str()).increment(1);
            why
        };
        // Take the listener's place first: the per-address map is only touched for a
        // connection that could be served at all.
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse(Refusal::ListenerFull));
        }
        let mut permit = Permit {
            admission: self.clone(),
            address: None,
        };
        if self.per_address > 0 {
            let mut by_address = self.by_address.lock();
            let n = by_address.entry(address).or_insert(0);
            if *n >= self.per_address {
                drop(by_address);
                return Err(refuse(Refusal::AddressFull));
            }
            *n += 1;
            permit.address = Some(address);
        }
        Metrics::listener_connections(self.listener).increment(1.0);
        Ok(permit)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn status(&self) -> AdmissionStatus {
        AdmissionStatus {
            listener: self.listener,
            max_connections: self.cap,
            max_connections_per_address: (self.per_address > 0).then_some(self.per_address),
            open_connections: self.open(),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(address) = self.address {
            let mut by_address = a.by_address.lock();
            if let Some(n) = by_address.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    by_address.remove(&address);
                }
            }
        }
        // A permit that failed the per-address check never counted on the gauge.
        if self.address.is_some() || a.per_address == 0 {
            Metrics::listener_connections(a.listener).decrement(1.0);
        }
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The caps in force for the public and the admin listener: the configured ones, lowered so that
/// both together stay within the descriptor limit `nofile` less a reserve. The admin listener
/// keeps its share first: it is how an operator sees and steers a node under a flood.
pub(crate) fn effective_caps(public: usize, admin: usize, nofile: u64) -> (usize, usize) {
    let room = nofile.saturating_sub(RESERVED_DESCRIPTORS).max(2);
    let admin = (admin as u64).min(room / 4).max(1);
    let public = (public as u64).min(room - admin).max(1);
    (public as usize, admin as usize)
}

/// Raises the process's descriptor soft limit to its hard limit (a default soft limit of 1,024
/// is far below what a node serving long-lived connections needs) and returns the limit in
/// force. Failing to raise it is not fatal: the caps follow whatever limit there is.
pub(crate) fn raise_descriptor_limit() -> u64 {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < hard => match rlimit::increase_nofile_limit(hard) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "could not raise the descriptor limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the descriptor limit");
            1024
        }
    }
}

/// The answer written on a refused connection before it is closed.
pub(crate) fn refusal_response(why: Refusal) -> Vec<u8> {
    let message = match why {
        Refusal::ListenerFull => "this listener holds as many connections as it may; retry shortly",
        Refusal::AddressFull => {
            "your address holds as many connections as one address may; close some and retry"
        }
    };
    let body = serde_json::json!({"error": {"code": "too_many_connections", "message": message}})
        .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection without waiting: whatever request already arrived is read and
/// dropped (closing over unread bytes would reset the connection and lose the answer), the answer
/// goes out if the socket takes it, and the socket closes when dropped.
pub(crate) fn refuse(stream: TcpStream, why: Refusal) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let answer = refusal_response(why);
    match stream.try_write(&answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_hold_per_listener_and_per_address_and_places_come_back() {
        let a = Admission::new(Listener::Public, 3, 2);
        let one = a.admit(ip(1)).unwrap();
        let two = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refusal::AddressFull);
        let three = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).unwrap_err(), Refusal::ListenerFull);
        assert_eq!(a.open(), 3);
        drop(one);
        assert_eq!(a.open(), 2);
        let again = a.admit(ip(1)).expect("a place came back to the address");
        drop((two, three, again));
        assert_eq!(a.open(), 0);
        assert!(a.by_address.lock().is_empty(), "no address is kept");
    }

    #[test]
    fn without_a_per_address_cap_one_address_may_fill_the_listener() {
        let a = Admission::new(Listener::Admin, 2, 0);
        let _p = (a.admit(ip(1)).unwrap(), a.admit(ip(1)).unwrap());
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refusal::ListenerFull);
        assert!(a.by_address.lock().is_empty());
    }

    #[test]
    fn the_descriptor_limit_lowers_the_caps_and_keeps_the_admin_share() {
        assert_eq!(effective_caps(50_000, 256, 1_048_576), (50_000, 256));
        // The 1,024 descriptors of a default soft limit: both caps fit, with the reserve.
        let (public, admin) = effective_caps(50_000, 256, 1024);
        assert_eq!((public, admin), (576, 192));
        assert!(public as u64 + admin as u64 + RESERVED_DESCRIPTORS <= 1024);
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_the_json_error_shape() {
        let text = String::from_utf8(refusal_response(Refusal::AddressFull)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
