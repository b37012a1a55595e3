//! Test support: a real server on 127.0.0.1 port 0 per test, and small WebSocket, SSE and HTTP
//! clients that speak the wire protocol.

pub(crate) mod ably_client;
pub(crate) mod fault_proxy;
pub(crate) mod pusher_client;
pub(crate) mod redis;
pub(crate) mod sockudo;
pub(crate) mod tls;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use understudy::config::ConfigSource;
use understudy::{App, AppState, Config, Listeners};

pub const KEY: &str = "test-publisher-key";
pub const SECRET: &str = "test-subscriber-secret-0123456789";
/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Server {
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    pub state: AppState,
    /// The file the configuration is read from on reload ([`Server::from_file`] only).
    pub config_file: Option<std::path::PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// A server with subscriber auth off.
    pub async fn start() -> Self {
        Self::with("[auth]\nsubscribe = \"none\"\n").await
    }

    /// A server with `toml` merged over the embedded defaults (test keys always set).
    pub async fn with(toml: &str) -> Self {
        let audit_dir = scratch_dir("audit");
        let env = |k: &str| match k {
            "UNDERSTUDY_AUDIT_DIR" if !toml.contains("[audit]") => {
                Some(audit_dir.display().to_string())
            }
            "UNDERSTUDY_PUBLISHER_KEYS" => Some(KEY.to_string()),
            "UNDERSTUDY_SUBSCRIBER_SECRET" => Some(SECRET.to_string()),
            _ => None,
        };
        let config = Config::load(Some(toml), &env).expect("test config is valid");
        Self::serve(config, None).await
    }

    /// A server whose configuration is read from a file, `toml` merged over the embedded
    /// defaults with nothing from the environment but the audit directory, so a test can rewrite
    /// the file and reload (keys included).
    pub async fn from_file(toml: &str) -> Self {
        let dir = scratch_dir("config");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("understudy.toml");
        std::fs::write(&file, toml).unwrap();
        let audit_dir = dir.join("audit").display().to_string();
        let source = ConfigSource::with_env(Some(file.clone()), move |k| {
            (k == "UNDERSTUDY_AUDIT_DIR").then(|| audit_dir.clone())
        });
        let config = source.load().expect("test config is valid");
        let mut server = Self::serve(config, Some(source)).await;
        server.config_file = Some(file);
        server
    }

    async fn serve(config: Config, source: Option<ConfigSource>) -> Self {
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let public = understudy::bind(local).unwrap();
        let admin = understudy::bind(local).unwrap();
        let base = format!("http://{}", public.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let mut app = App::build(config, Listeners { public, admin }).expect("app builds");
        if let Some(source) = source {
            app = app.with_source(source);
        }
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Self {
            base,
            admin: admin_url,
            http: reqwest::Client::new(),
            state,
            config_file: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Sends the shutdown signal and returns the run task to await.
    pub fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.stop.take().map(|tx| tx.send(()));
        self.task.take().expect("server still running")
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("{}/v1/ws{query}", self.base.replace("http://", "ws://"))
    }

    pub async fn publish(&self, body: Value) -> (u16, Value) {
        self.post("/v1/publish", body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Publishes `name` on `channel` and returns the seq.
    pub async fn publish_seq(&self, channel: &str, n: u64) -> u64 {
        let (status, v) = self
            .publish(json!({"channel": channel, "name": "n", "data": {"n": n}}))
            .await;
        assert_eq!(status, 202, "{v}");
        v["seq"].as_u64().unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Server {
    /// A call to the admin listener, with `token` as the bearer if given.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.admin));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await;
        r.unwrap().text().await.unwrap()
    }

    /// Starts a GET of `path` in the background (a long poll), answering its JSON body.
    pub fn spawn_get(&self, path: &str) -> JoinHandle<Value> {
        let (http, url) = (self.http.clone(), format!("{}{path}", self.base));
        tokio::spawn(async move { http.get(url).send().await.unwrap().json().await.unwrap() })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|tx| tx.send(()));
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connects");
    ws
}

/// The next frame that is not a Ping or Pong, `None` when the stream ends. The server pings every
/// heartbeat, so any test that outlasts one sees pings between its messages: a reader that took a
/// Ping for the end of the stream would fail only on a slow machine.
pub async fn ws_frame<S>(
    ws: &mut S,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return other,
        }
    }
}

/// The next JSON text message whose type is not in `skip` (pings are always skipped).
async fn ws_next_skipping<S>(ws: &mut S, skip: &[&str]) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws_frame(ws))
            .await
            .expect("a message within the test's patience")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if !skip.iter().any(|k| v["type"] == *k) {
                return v;
            }
        }
    }
}

/// The next JSON text message, skipping heartbeats and route announcements.
pub async fn ws_next<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    ws_next_skipping(ws, &["heartbeat", "route"]).await
}

/// The next JSON text message of any type but heartbeat.
pub async fn ws_next_any(ws: &mut Ws) -> Value {
    ws_next_skipping(ws, &["heartbeat"]).await
}

/// Reads messages until one of `type`, asserting nothing else of interest arrives before it.
pub async fn ws_expect<S>(ws: &mut S, kind: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let v = ws_next(ws).await;
    assert_eq!(v["type"], kind, "expected {kind}, got {v}");
    v
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// A minimal SSE reader: yields `(id, data JSON)` for unnamed events.
pub struct Sse {
    body: reqwest::Response,
    buf: String,
    pub last_id: Option<String>,
}

impl Sse {
    pub async fn open(server: &Server, query: &str, last_event_id: Option<&str>) -> Self {
        let mut req = server.http.get(format!("{}/v1/sse{query}", server.base));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let body = req.send().await.unwrap();
        assert_eq!(body.status(), 200);
        Self {
            body,
            buf: String::new(),
            last_id: None,
        }
    }

    /// The next unnamed message's data, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut data = None;
                let mut named = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        self.last_id = Some(id.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(d).unwrap());
                    } else if line.starts_with("event: ") {
                        named = true;
                    }
                }
                match data {
                    Some(d) if !named => return Some(d),
                    _ => continue,
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.chunk())
                .await
                .expect("SSE data within the test's patience")
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.next().await.expect("stream open");
        assert_eq!(v["type"], kind, "expected {kind}, got {v}");
        v
    }
}

/// Mints a subscriber token for `channels`, valid for `ttl_secs` (negative: already expired).
pub fn token(channels: &[&str], ttl_secs: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"exp": now + ttl_secs, "channels": channels}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The seqs of event messages, in order.
pub fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Waits until `cond` holds, checking between yields; fails after the test's patience.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `check` every 10 ms until it is true; fails after `within` with `what`.
pub(crate) async fn eventually_within(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh directory under the system temp dir, unique to this process and call.
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("understudy-it-{}-{what}-{n}", std::process::id()))
}

/// Starts `understudy serve` as its own process from `cmd` (arguments and environment set by the
/// caller; stdout is taken here) and answers it with its public base URL, read from the start-up
/// banner. Stdout is read to its end, since a closed pipe would fail the server's next print.
pub fn spawn_serving(cmd: std::process::Command) -> (std::process::Child, String) {
    let (child, public, _admin) = spawn_serving_both(cmd);
    (child, public)
}

/// [`spawn_serving`], answering the admin base URL too. A node of its own process has its own
/// metrics and dashboard totals, which a test can check without another test's traffic in them.
pub fn spawn_serving_both(mut cmd: std::process::Command) -> (std::process::Child, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let line = line.trim();
            for (i, banner) in ["public API", "admin API"].into_iter().enumerate() {
                if let Some(rest) = line.strip_prefix(banner) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((i, url));
                }
            }
        }
    });
    let (mut public, mut admin) = (None, None);
    while public.is_none() || admin.is_none() {
        let (i, url) = rx
            .recv_timeout(PATIENCE)
            .expect("the public and admin addresses on stdout");
        *(if i == 0 { &mut public } else { &mut admin }) = Some(url);
    }
    (child, public.unwrap(), admin.unwrap())
}
