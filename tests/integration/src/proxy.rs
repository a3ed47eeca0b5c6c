//! A TCP proxy on a free loopback port in front of a test server, whose connections can be
//! cut and restored: a network blip between the library and Redis, with Redis itself up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to the server's port while up.
pub struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:<upstream>` (call from a tokio runtime).
    pub async fn start(upstream: u16) -> Self {
        Self::with_connect_delay(upstream, Duration::ZERO).await
    }

    /// A proxy whose connections reach the server only `delay` after they were accepted:
    /// a slow network while a client connects (what the client sends meanwhile waits).
    pub async fn with_connect_delay(upstream: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("its address").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, links) = (up.clone(), links.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // refused: dropped at once
                    }
                    let link = tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    links.lock().expect("links").push(link);
                }
            })
        };
        Self {
            port,
            up,
            links,
            accept,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
