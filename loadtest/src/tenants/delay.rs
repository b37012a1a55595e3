//! A TCP relay that holds every chunk the client sends for a fixed delay before passing it on
//! (answers come back at once), in order. Put between understudy and the vendor, it turns each
//! vendor request into one of at least `delay`, so a lane's slots are busy long enough for a
//! flood to fill its queue on a machine where the real vendor answers in a millisecond.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per connection and direction; a full queue stops reading (backpressure).
const CHUNKS: usize = 256;

/// Relays connections to `listen` on to `upstream`; runs until the caller's deadline drops it.
pub(super) async fn serve(listen: SocketAddr, upstream: SocketAddr, delay: Duration) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                relay(client, server, delay).await;
            }
        });
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS);
    let upward = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    let delayed = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if server_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downward = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upward, delayed, downward);
}
