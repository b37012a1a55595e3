//! A real `sockudo` process (Pusher- and Ably-compatible vendor server, VENDORS.md §5.2) on a
//! free 127.0.0.1 port, with its own app id, key and secret, started from an empty temporary
//! directory (so no `config/` is read), stopped and removed on drop.
//!
//! sockudo serves plain TCP; a [`TlsTerminator`] in front of it gives the vendor URLs understudy
//! uses, over TLS by default (`tls=true`, a certificate from the run's CA, which understudy is
//! given as `vendors.ca_file`), as hosted vendors are only reached over TLS. The plain port is
//! for the tests' own subscribers and for tests that need it.
//!
//! The binary is `$UNDERSTUDY_SOCKUDO`, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/understudy/sockudo-5.2.0/bin/sockudo`. A missing binary
//! fails the test with the install command; it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::tls::TlsTerminator;

/// A running sockudo.
pub(crate) struct Sockudo {
    child: Child,
    /// sockudo's own, plain port.
    pub(crate) port: u16,
    /// TLS in front of `port`.
    pub(crate) tls: TlsTerminator,
    pub(crate) app_id: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    dir: PathBuf,
    stopped: bool,
}

/// The sockudo binary to run.
pub(crate) fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("UNDERSTUDY_SOCKUDO") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("understudy/sockudo-5.2.0/bin/sockudo")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Sockudo {
    /// Starts sockudo with the test defaults (VENDORS.md §5.2) and waits for `GET /up`.
    pub(crate) async fn start() -> Sockudo {
        Sockudo::start_with(&[]).await
    }

    /// Like [`Sockudo::start`], with extra or overriding environment variables.
    pub(crate) async fn start_with(extra_env: &[(&str, &str)]) -> Sockudo {
        let bin = binary();
        assert!(
            bin.is_file(),
            "sockudo not found at {}. Install it once per machine (about 20 minutes):\n  \
             apt-get install -y cmake protobuf-compiler\n  \
             cargo install sockudo --version 5.2.0 --locked --no-default-features --features \"local,ably-compat\" --root {}\n\
             or point UNDERSTUDY_SOCKUDO at a binary.",
            bin.display(),
            bin.parent().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default()
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            match Sockudo::try_start(&bin, extra_env).await {
                Ok(sockudo) => return sockudo,
                Err(log) => last_log = log,
            }
        }
        panic!("sockudo did not start three times; last log:\n{last_log}");
    }

    async fn try_start(bin: &PathBuf, extra_env: &[(&str, &str)]) -> Result<Sockudo, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("understudy-sockudo-{tag}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = std::fs::File::create(dir.join("sockudo.log")).expect("log file");
        let port = free_port();
        let (app_id, key, secret) = (
            format!("app-{tag}"),
            format!("key-{tag}"),
            format!("secret-{tag}"),
        );
        let mut command = Command::new(bin);
        command
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("METRICS_ENABLED", "false")
            .env("METRICS_HOST", "127.0.0.1")
            .env("SOCKUDO_DEFAULT_APP_ID", &app_id)
            .env("SOCKUDO_DEFAULT_APP_KEY", &key)
            .env("SOCKUDO_DEFAULT_APP_SECRET", &secret)
            .env("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "10")
            .env("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "10")
            .env(
                "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND",
                "100000",
            )
            .env("SOCKUDO_ABLY_COMPAT_ENABLED", "true")
            .env("PUSH_ALLOW_MEMORY_DRIVERS", "true")
            .env("RATE_LIMITER_ENABLED", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut sockudo = Sockudo {
            child,
            port,
            tls: TlsTerminator::start(port).await,
            app_id,
            key,
            secret,
            dir,
            stopped: false,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = sockudo.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", sockudo.log()));
            }
            let up = client
                .get(format!("http://127.0.0.1:{port}/up"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return Ok(sockudo);
            }
            if Instant::now() > deadline {
                return Err(format!("no GET /up within 10 s:\n{}", sockudo.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `pusher://key:secret@127.0.0.1:tls_port/app_id`: over TLS (the default).
    pub(crate) fn pusher_url(&self) -> String {
        format!(
            "pusher://{}:{}@127.0.0.1:{}/{}",
            self.key, self.secret, self.tls.port, self.app_id
        )
    }

    /// `ably://key:secret@127.0.0.1:tls_port` over TLS (sockudo's Ably key is
    /// `app-key:app-secret`).
    pub(crate) fn ably_url(&self) -> String {
        format!(
            "ably://{}:{}@127.0.0.1:{}",
            self.key, self.secret, self.tls.port
        )
    }

    /// `pusher://key:secret@127.0.0.1:port/app_id?tls=false`: sockudo's own plain port.
    pub(crate) fn plain_pusher_url(&self) -> String {
        format!(
            "pusher://{}:{}@127.0.0.1:{}/{}?tls=false",
            self.key, self.secret, self.port, self.app_id
        )
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sockudo.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// SIGSTOP: a hung vendor (TCP connects still succeed, nothing answers).
    pub(crate) fn pause(&mut self) {
        self.signal("STOP");
        self.stopped = true;
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self) {
        self.signal("CONT");
        self.stopped = false;
    }

    /// Kills the process and stops its TLS terminator: connections are refused from now on
    /// (the terminator's listener closes once its task is next polled).
    pub(crate) fn kill(&mut self) {
        self.tls.stop();
        if self.stopped {
            self.resume();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sockudo {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
