//! `Server::with_bearer_auth` (issue 16): how each verdict of a bearer check maps to an HTTP
//! answer on `/metrics`, and that probes stay open. The Kubernetes checker itself is tested
//! against a real API server in kepler-bin/tests/kube_auth_e2e.rs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kepler_export::{BearerAuth, BearerVerdict, MetricsHandle, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Verdicts by token; counts the checks.
#[derive(Debug, Default)]
struct ByToken(AtomicUsize);

impl BearerAuth for ByToken {
    fn check<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = BearerVerdict> + Send + 'a>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match token {
                "good" => BearerVerdict::Allowed,
                "other" => BearerVerdict::Forbidden,
                "down" => BearerVerdict::Unavailable,
                _ => BearerVerdict::Unauthenticated,
            }
        })
    }
}

async fn status(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_map_to_200_403_401_503_and_probes_stay_open() {
    let auth = Arc::new(ByToken::default());
    let server = Server::bind(ServerConfig {
        listen: vec!["127.0.0.1:0".into()],
        web: None,
    })
    .await
    .unwrap()
    .with_bearer_auth(auth.clone());
    let addr = server.local_addrs()[0];
    let handle = MetricsHandle::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(handle, async move {
        let _ = rx.await;
    }));

    // Allowed: past the check (503 only because nothing was published yet).
    assert_eq!(status(addr, "/metrics", Some("Bearer good")).await, 503);
    assert_eq!(status(addr, "/metrics", Some("Bearer other")).await, 403);
    assert_eq!(status(addr, "/metrics", Some("Bearer down")).await, 503);
    assert_eq!(status(addr, "/metrics", Some("Bearer nope")).await, 401);
    assert_eq!(status(addr, "/metrics", Some("Basic Z29vZDp4")).await, 401);
    assert_eq!(status(addr, "/metrics", None).await, 401);
    assert_eq!(
        auth.0.load(Ordering::SeqCst),
        4,
        "no check without a bearer token"
    );
    assert_eq!(status(addr, "/healthz", None).await, 200);
    // Nothing published yet: not ready, but answered, not refused.
    assert_eq!(status(addr, "/readyz", None).await, 503);
    assert_eq!(auth.0.load(Ordering::SeqCst), 4, "probes are not checked");
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
