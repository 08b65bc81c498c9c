//! The HTTP(S) server on 127.0.0.1:0: routes, gzip, readiness, TLS and basic auth, web-config
//! errors. A minimal HTTP/1.1 client is written here (one request per connection).

mod common;

use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{context, snapshot, stats};
use kepler_export::{
    ErrorKind, Exposition, Format, MetricsHandle, MetricsLevel, Server, ServerConfig, WebConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {raw:?}")))?;
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let s = TcpStream::connect(addr).await.unwrap();
    request_on(s, "GET", path, headers).await.unwrap()
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), kepler_export::ExportError>>,
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server drains and stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(web: Option<WebConfig>, handle: MetricsHandle) -> Running {
    let server = Server::bind(ServerConfig {
        listen: vec!["127.0.0.1:0".into()],
        web,
    })
    .await
    .unwrap()
    .with_drain_timeout(Duration::from_secs(2));
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(handle, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

fn exposition() -> Exposition {
    Exposition::render(&snapshot(3), None, &context(MetricsLevel::all()), &stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_503_before_publish_then_plain_and_gzip() {
    let handle = MetricsHandle::new();
    let srv = start(None, handle.clone()).await;

    let r = get(srv.addr, "/metrics", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("no metrics yet"), "{}", r.text());

    let e = exposition();
    let text = e.text().clone();
    handle.publish(e);

    let r = get(srv.addr, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, &text[..]);

    let r = get(
        srv.addr,
        "/metrics",
        &[("Accept-Encoding", "gzip, deflate")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, &text[..]);
    assert!(r.body.len() < text.len());

    let r = get(
        srv.addr,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .await;
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().ends_with("# EOF\n"));

    // HEAD: headers, no body.
    let s = TcpStream::connect(srv.addr).await.unwrap();
    let r = request_on(s, "HEAD", "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_index_404_405() {
    let handle = MetricsHandle::new();
    let srv = start(None, handle.clone()).await;

    let r = get(srv.addr, "/healthz", &[]).await;
    assert_eq!((r.status, r.text()), (200, "ok\n"));

    assert_eq!(get(srv.addr, "/readyz", &[]).await.status, 503);
    handle.set_ready(true);
    // Ready needs an exposition too.
    assert_eq!(get(srv.addr, "/readyz", &[]).await.status, 503);
    handle.publish(exposition());
    assert_eq!(get(srv.addr, "/readyz", &[]).await.status, 200);
    handle.set_ready(false);
    assert_eq!(get(srv.addr, "/readyz", &[]).await.status, 503);

    let r = get(srv.addr, "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("href=\"/metrics\""));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    assert_eq!(get(srv.addr, "/nope", &[]).await.status, 404);

    let s = TcpStream::connect(srv.addr).await.unwrap();
    let r = request_on(s, "POST", "/metrics", &[("Content-Length", "0")])
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_error_names_the_address() {
    let first = Server::bind(ServerConfig {
        listen: vec!["127.0.0.1:0".into()],
        web: None,
    })
    .await
    .unwrap();
    let taken = first.local_addrs()[0].to_string();
    let err = Server::bind(ServerConfig {
        listen: vec!["127.0.0.1:0".into(), taken.clone()],
        web: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Bind { address, .. } if *address == taken));
    assert!(err.to_string().contains(&taken), "{err}");

    let err = Server::bind(ServerConfig {
        listen: vec!["localhost".into()],
        web: None,
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ListenAddress { .. }),
        "{err}"
    );

    // `:port` binds every interface (dual-stack where the host has IPv6).
    let any = Server::bind(ServerConfig {
        listen: vec![":0".into()],
        web: None,
    })
    .await
    .unwrap();
    assert!(any.local_addrs()[0].ip().is_unspecified());

    // Several addresses, all bound, in order.
    let two = Server::bind(ServerConfig {
        listen: vec!["127.0.0.1:0".into(), "localhost:0".into()],
        web: None,
    })
    .await
    .unwrap();
    assert_eq!(two.local_addrs().len(), 2);
}

struct Tls {
    dir: tempfile::TempDir,
    cert_pem: String,
}

fn tls_files() -> Tls {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = ck.cert.pem();
    std::fs::write(dir.path().join("server.crt"), &cert_pem).unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    Tls { dir, cert_pem }
}

fn write_web_config(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let p = dir.join("web.yml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn tls_connector(cert_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn get_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    request_on(tls, "GET", path, headers).await.unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth() {
    let tls = tls_files();
    // Cost 4 keeps the test fast; the server is indifferent to the cost.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let path = write_web_config(
        tls.dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    );
    let web = WebConfig::from_file(&path).unwrap();
    assert!(web.tls_enabled() && web.basic_auth_enabled());
    let handle = MetricsHandle::new();
    handle.publish(exposition());
    handle.set_ready(true);
    let srv = start(Some(web), handle).await;
    let connector = tls_connector(&tls.cert_pem);

    let ok = basic("prometheus", "s3cret");
    for _ in 0..2 {
        // The second request is served from the success cache.
        let r = get_tls(srv.addr, &connector, "/metrics", &[("Authorization", &ok)]).await;
        assert_eq!(r.status, 200);
        assert!(r.text().contains("kepler_build_info{"));
        assert_eq!(r.header("x-frame-options"), Some("deny"));
    }

    let bad = basic("prometheus", "wrong");
    let r = get_tls(srv.addr, &connector, "/metrics", &[("Authorization", &bad)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"kepler\""));
    assert!(!r.text().contains("kepler_"));

    let unknown = basic("mallory", "s3cret");
    let r = get_tls(
        srv.addr,
        &connector,
        "/metrics",
        &[("Authorization", &unknown)],
    )
    .await;
    assert_eq!(r.status, 401);

    let r = get_tls(srv.addr, &connector, "/metrics", &[]).await;
    assert_eq!(r.status, 401);
    // Health probes are protected too, as in exporter-toolkit.
    let r = get_tls(srv.addr, &connector, "/healthz", &[]).await;
    assert_eq!(r.status, 401);
    let r = get_tls(srv.addr, &connector, "/healthz", &[("Authorization", &ok)]).await;
    assert_eq!(r.status, 200);

    // Plain HTTP to the TLS port: no HTTP response with metrics.
    let plain = TcpStream::connect(srv.addr).await.unwrap();
    match tokio::time::timeout(
        Duration::from_secs(5),
        request_on(plain, "GET", "/metrics", &[("Authorization", &ok)]),
    )
    .await
    .expect("server answers or closes promptly")
    {
        Err(_) => {}
        Ok(r) => {
            assert_ne!(r.status, 200);
            assert!(!r.text().contains("kepler_"));
        }
    }
    srv.stop().await;
}

/// A client on ring's provider offering exactly one suite at one TLS version.
fn one_suite_connector(
    cert_pem: &str,
    suite: rustls::SupportedCipherSuite,
    version: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Issue 16: a `fips` build's TLS server (the aws-lc FIPS module) refuses a client that offers
/// only suites outside FIPS 140-3 (ChaCha20-Poly1305) and serves one offering an approved
/// AES-GCM suite, on TLS 1.3 and 1.2. The default (ring) build accepts both. CI runs it with
/// `--features kepler-crypto/fips` and `REQUIRE_FIPS=1`, which fails a build that is not FIPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fips_build_refuses_non_approved_suites_issue_16() {
    use rustls::crypto::ring::cipher_suite as suite;
    if std::env::var("REQUIRE_FIPS").as_deref() == Ok("1") && !kepler_crypto::FIPS_BUILD {
        panic!("REQUIRE_FIPS=1 but this test was built without kepler-crypto/fips");
    }
    assert_eq!(kepler_crypto::provider().fips(), kepler_crypto::FIPS_BUILD);
    let tls = tls_files();
    let path = write_web_config(
        tls.dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n",
    );
    let handle = MetricsHandle::new();
    handle.publish(exposition());
    handle.set_ready(true);
    let srv = start(Some(WebConfig::from_file(&path).unwrap()), handle).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let cases = [
        (
            suite::TLS13_AES_128_GCM_SHA256,
            &rustls::version::TLS13,
            true,
        ),
        (
            suite::TLS13_AES_256_GCM_SHA384,
            &rustls::version::TLS13,
            true,
        ),
        (
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            &rustls::version::TLS12,
            true,
        ),
        (
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            &rustls::version::TLS13,
            false,
        ),
        (
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            &rustls::version::TLS12,
            false,
        ),
    ];
    for (offered, version, approved) in cases {
        let connector = one_suite_connector(&tls.cert_pem, offered, version);
        let tcp = TcpStream::connect(srv.addr).await.unwrap();
        let served = match connector.connect(name.clone(), tcp).await {
            Ok(stream) => {
                let r = request_on(stream, "GET", "/metrics", &[]).await.unwrap();
                assert_eq!(r.status, 200, "{offered:?}");
                assert!(r.text().contains("kepler_build_info{"));
                true
            }
            Err(e) => {
                // The server answers with a handshake_failure alert: no suite in common.
                assert!(
                    e.to_string().contains("HandshakeFailure"),
                    "{offered:?}: {e}"
                );
                false
            }
        };
        let expected = approved || !kepler_crypto::FIPS_BUILD;
        assert_eq!(
            served,
            expected,
            "{offered:?} over {version:?}, fips build: {}",
            kepler_crypto::FIPS_BUILD
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_with_idle_keepalive_connection() {
    let handle = MetricsHandle::new();
    handle.publish(exposition());
    let srv = start(None, handle).await;
    // A keep-alive connection that sent one request and stays open.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let addr = srv.addr;
    srv.stop().await;
    // The listener is closed after shutdown.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn web_config_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();

    let p = write_web_config(dir.path(), "tls_server_config:\n  cert_fil: a.crt\n");
    let e = WebConfig::from_file(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e.kind(), ErrorKind::WebConfigSyntax { .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("cert_fil"),
        "{msg}"
    );

    let p = write_web_config(
        dir.path(),
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
    );
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Read { path, .. } if path.ends_with("missing.crt")),
        "{e}"
    );

    let p = write_web_config(dir.path(), "basic_auth_users:\n  alice: plaintext\n");
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebConfigValue { key, .. } if key == "basic_auth_users.alice"),
        "{e}"
    );

    let tls = tls_files();
    let p = write_web_config(
        tls.dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
    );
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebConfigValue { key, .. } if key == "tls_server_config.min_version"),
        "{e}"
    );

    let p = write_web_config(
        tls.dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n",
    );
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebConfigValue { key, .. } if key == "tls_server_config.key_file"),
        "{e}"
    );

    // Key file holding a certificate, not a key.
    let p = write_web_config(
        tls.dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n",
    );
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(e.to_string().contains("key_file"), "{e}");

    let p = write_web_config(
        tls.dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
    );
    let e = WebConfig::from_file(&p).unwrap_err();
    assert!(e.to_string().contains("client_ca_file"), "{e}");

    let e = WebConfig::from_file(&dir.path().join("absent.yml")).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Read { .. }), "{e}");

    // Empty file and auth-only file are valid (plain HTTP).
    let p = write_web_config(dir.path(), "");
    assert!(!WebConfig::from_file(&p).unwrap().tls_enabled());
}

/// Issue 9: a variant that scrapes asked for is made before the next exposition is
/// published, so a scrape never waits for a compression; one nobody asked for during an
/// interval is no longer made ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_asked_for_are_made_before_the_next_publish_issue_9() {
    let handle = MetricsHandle::new();
    let srv = start(None, handle.clone()).await;
    handle.publish(exposition());
    let latest = || handle.latest().unwrap();
    assert!(!latest().is_made(Format::Text, true));

    let gz = [("Accept-Encoding", "gzip")];
    assert_eq!(get(srv.addr, "/metrics", &gz).await.status, 200);
    handle.publish(exposition());
    assert!(latest().is_made(Format::Text, true), "gzip made ahead");
    assert!(!latest().is_made(Format::OpenMetrics, false));
    // Served as made: the same bytes.
    let r = get(srv.addr, "/metrics", &gz).await;
    assert_eq!(r.body, latest().text_gzip().to_vec());

    let om = [
        ("Accept", "application/openmetrics-text;version=1.0.0"),
        ("Accept-Encoding", "gzip"),
    ];
    assert_eq!(get(srv.addr, "/metrics", &om).await.status, 200);
    handle.publish(exposition());
    assert!(latest().is_made(Format::OpenMetrics, true));
    assert!(
        latest().is_made(Format::Text, true),
        "both were asked in the last interval"
    );
    assert_eq!(get(srv.addr, "/metrics", &om).await.status, 200);
    handle.publish(exposition());
    assert!(latest().is_made(Format::OpenMetrics, true));
    assert!(
        !latest().is_made(Format::Text, true),
        "not asked in the last interval"
    );

    // An interval without scrapes: nothing is made ahead any more.
    handle.publish(exposition());
    handle.publish(exposition());
    assert!(!latest().is_made(Format::OpenMetrics, true));
    srv.stop().await;
}
