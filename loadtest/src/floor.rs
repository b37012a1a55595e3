//! The `floor` reference server: what fan-out costs when a server does nothing but one
//! `write` per subscriber per event. One thread, one epoll loop (mio), no history, no auth,
//! no JSON, no runtime. It speaks nchan's dialect ([`wire`]), so the same load tool runs
//! against understudy, nginx + nchan and this floor, and its CPU per delivered event is the
//! cost the kernel alone imposes on loopback.
//!
//! An event becomes its WebSocket frame and its EventSource event once and is written to each
//! subscriber of its channel in one `write`; what a socket does not take is kept (bounded, then
//! the subscriber is dropped) and written when it drains. An idle subscriber owns its socket,
//! its channel name and an empty backlog.

mod wire;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{bail, Context, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use wire::{Opening, Stream};

/// The listener's token; connections use their slot index.
const LISTENER: Token = Token(usize::MAX);
/// Bytes a subscriber may have unsent before it is dropped as a slow consumer.
const MAX_BACKLOG: usize = 4 << 20;
/// Longest opening request head or unanswered publish the floor buffers.
const MAX_REQUEST: usize = 1 << 20;
/// Bytes read per `read` call, shared by every connection.
const SCRATCH: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct FloorArgs {
    /// Address to listen on; loopback only.
    #[arg(long, default_value = "127.0.0.1:18580")]
    listen: SocketAddr,
    /// Seconds after which the server exits by itself, so a forgotten one does not linger.
    #[arg(long, default_value_t = 3600.0, value_parser = crate::parse_duration_secs)]
    lifetime: f64,
}

/// Runs the floor server on this thread until `--lifetime` has passed (or a signal ends the
/// process).
pub(crate) fn run(args: FloorArgs) -> Result<bool> {
    if !args.listen.ip().is_loopback() {
        bail!("the floor listens on loopback only, not {}", args.listen);
    }
    let mut floor = Floor::bind(args.listen)?;
    eprintln!("floor listening on {}", floor.local_addr()?);
    floor.serve(Instant::now() + Duration::from_secs_f64(args.lifetime))?;
    Ok(true)
}

/// The server: its poll, listener, connections and channels.
pub(crate) struct Floor {
    poll: Poll,
    listener: TcpListener,
    /// Connections by token; `None` slots are listed in `free`.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Subscriber tokens by channel; a channel without subscribers is removed.
    channels: HashMap<Box<str>, Vec<usize>>,
    scratch: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    role: Role,
    /// Bytes the socket did not take yet; empty (and unallocated) while it keeps up.
    backlog: Vec<u8>,
    /// Registered for writability: exactly while `backlog` is not empty.
    watching_writes: bool,
}

enum Role {
    /// The opening request is still arriving.
    Opening {
        head: Vec<u8>,
    },
    /// Keep-alive publishes; `buf` holds the part of the next one read so far.
    Publisher {
        buf: Vec<u8>,
    },
    Subscriber {
        channel: Box<str>,
        kind: Stream,
    },
}

impl Floor {
    pub(crate) fn bind(addr: SocketAddr) -> Result<Self> {
        let poll = Poll::new().context("creating the epoll instance")?;
        let mut listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            channels: HashMap::new(),
            scratch: vec![0; SCRATCH],
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The event loop, until `deadline`.
    pub(crate) fn serve(&mut self, deadline: Instant) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self
                .poll
                .poll(&mut events, Some(left.min(Duration::from_secs(1))))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("epoll_wait"),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept()?,
                    Token(i) => {
                        if event.is_writable() {
                            self.flush(i);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(i);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self) -> Result<()> {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors or a connection reset before accept: skip it.
                Err(_) => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            self.poll
                .registry()
                .register(&mut stream, Token(slot), Interest::READABLE)?;
            self.conns[slot] = Some(Conn {
                stream,
                role: Role::Opening { head: Vec::new() },
                backlog: Vec::new(),
                watching_writes: false,
            });
        }
    }

    /// Reads everything the socket has (edge-triggered) and acts on it.
    fn read(&mut self, i: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(i),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(i),
            };
            let bytes = &self.scratch[..n];
            let keep = match &mut conn.role {
                Role::Opening { head } => {
                    head.extend_from_slice(bytes);
                    self.open(i)
                }
                Role::Publisher { buf } => {
                    buf.extend_from_slice(bytes);
                    self.publish(i)
                }
                Role::Subscriber {
                    kind: Stream::Ws, ..
                } if wire::is_ws_close(bytes) => {
                    let _ = write_or_keep(conn, wire::WS_CLOSE, &self.poll, i);
                    false
                }
                // Nothing else a subscriber sends matters.
                Role::Subscriber { .. } => true,
            };
            if !keep {
                return self.close(i);
            }
        }
    }

    /// Acts on a connection's opening request once it is complete; `false` to close it.
    fn open(&mut self, i: usize) -> bool {
        let Some(conn) = self.conns[i].as_mut() else {
            return false;
        };
        let Role::Opening { head } = &mut conn.role else {
            return true;
        };
        if head.len() > MAX_REQUEST {
            return false;
        }
        match wire::opening(head) {
            None => true,
            Some(Opening::Refused) => {
                let _ = write_or_keep(conn, wire::NOT_FOUND, &self.poll, i);
                false
            }
            Some(Opening::Publisher) => {
                let buf = std::mem::take(head);
                conn.role = Role::Publisher { buf };
                self.publish(i)
            }
            Some(Opening::Subscriber {
                channel,
                kind,
                reply,
            }) => {
                if write_or_keep(conn, &reply, &self.poll, i).is_err() {
                    return false;
                }
                self.channels.entry(channel.clone()).or_default().push(i);
                conn.role = Role::Subscriber { channel, kind };
                true
            }
        }
    }

    /// Delivers every complete publish in publisher `i`'s buffer and answers each; `false`
    /// to close it.
    fn publish(&mut self, i: usize) -> bool {
        let Some(Role::Publisher { buf }) = self.conns[i].as_mut().map(|c| &mut c.role) else {
            return false;
        };
        let mut buf = std::mem::take(buf);
        let mut used = 0;
        let mut ok = true;
        loop {
            match wire::publish(&buf[used..]) {
                Ok(Some(p)) => {
                    self.deliver(p.channel, p.body);
                    used += p.len;
                    let Some(conn) = self.conns[i].as_mut() else {
                        return false;
                    };
                    if write_or_keep(conn, wire::PUBLISHED, &self.poll, i).is_err() {
                        ok = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        buf.drain(..used);
        ok &= buf.len() <= MAX_REQUEST;
        if let Some(Role::Publisher { buf: slot }) = self.conns[i].as_mut().map(|c| &mut c.role) {
            *slot = buf;
        }
        ok
    }

    /// One write of the event to each subscriber of `channel`.
    fn deliver(&mut self, channel: &str, body: &[u8]) {
        let Some(subscribers) = self.channels.get(channel) else {
            return;
        };
        let (ws, sse) = (wire::ws_text_frame(body), wire::sse_event(body));
        let mut dead = Vec::new();
        for &t in subscribers {
            let Some(conn) = self.conns[t].as_mut() else {
                continue;
            };
            let bytes = match conn.role {
                Role::Subscriber {
                    kind: Stream::Ws, ..
                } => &ws,
                _ => &sse,
            };
            if write_or_keep(conn, bytes, &self.poll, t).is_err() {
                dead.push(t);
            }
        }
        for t in dead {
            self.close(t);
        }
    }

    /// Writes what connection `i` has kept, once its socket takes more.
    fn flush(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if conn.backlog.is_empty() {
            return;
        }
        let backlog = std::mem::take(&mut conn.backlog);
        if write_or_keep(conn, &backlog, &self.poll, i).is_err() {
            self.close(i);
        }
    }

    fn close(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        if let Role::Subscriber { channel, .. } = conn.role {
            if let Some(subscribers) = self.channels.get_mut(&channel) {
                if let Some(at) = subscribers.iter().position(|&t| t == i) {
                    subscribers.swap_remove(at);
                }
                if subscribers.is_empty() {
                    self.channels.remove(&channel);
                }
            }
        }
        // Dropping the stream closes the socket, which also takes it out of the epoll set.
        self.free.push(i);
    }
}

/// One `write` of `bytes` behind whatever is already kept; what the socket does not take is
/// kept and the connection watched for writability until it drains. `Err` when the socket
/// failed or the backlog would pass [`MAX_BACKLOG`].
fn write_or_keep(conn: &mut Conn, bytes: &[u8], poll: &Poll, i: usize) -> io::Result<()> {
    if !conn.backlog.is_empty() {
        if conn.backlog.len() + bytes.len() > MAX_BACKLOG {
            return Err(io::Error::other("slow consumer"));
        }
        conn.backlog.extend_from_slice(bytes);
        return Ok(());
    }
    let written = loop {
        match conn.stream.write(bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let rest = &bytes[written..];
    if rest.is_empty() {
        // Drained: give the memory back.
        conn.backlog = Vec::new();
    } else {
        conn.backlog.extend_from_slice(rest);
    }
    let watch = !conn.backlog.is_empty();
    if watch != conn.watching_writes {
        let interest = if watch {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut conn.stream, Token(i), interest)?;
        conn.watching_writes = watch;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
