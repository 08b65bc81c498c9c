//! Remote mode: scrape a kepler `/metrics` URL every refresh on a thread of its own and hand
//! each result (a frame, or why there is none) to the view. A remote that goes away is
//! reported and tried again on the next refresh, for as long as the view runs.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::BuilderVerifierExt;

use super::exposition::frame_from_exposition;
use super::model::Frame;

/// Where and how to scrape.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The exporter's metrics URL, `http://` or `https://`.
    pub url: reqwest::Url,
    /// PEM certificates to trust instead of the system's (a self-signed exporter).
    pub ca_file: Option<PathBuf>,
    /// Basic auth user and password.
    pub basic_auth: Option<(String, String)>,
    /// Longest a scrape may take.
    pub timeout: Duration,
    /// Time between scrapes.
    pub refresh: Duration,
}

/// Largest body accepted: a node with 10k processes renders about 8 MB.
const MAX_BODY: usize = 256 << 20;

/// The HTTP client for `o`: rustls with kepler-crypto's provider given explicitly (the
/// process-wide default panics when two providers are linked), the system's roots or the CA
/// file.
pub fn client(o: &RemoteOptions) -> Result<reqwest::Client, String> {
    let provider = kepler_crypto::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = match &o.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--tls.ca-file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--tls.ca-file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls.ca-file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--tls.ca-file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| format!("cannot load the system's certificates: {e}"))?
            .with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(o.timeout)
        .connect_timeout(o.timeout)
        .no_proxy()
        .user_agent(concat!("kepler-top/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// One scrape, parsed; `Err` says why there is no frame, in a line fit for the header.
pub async fn scrape(
    client: &reqwest::Client,
    o: &RemoteOptions,
    origin: Instant,
) -> Result<Frame, String> {
    let mut req = client
        .get(o.url.clone())
        .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4");
    if let Some((user, password)) = &o.basic_auth {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.map_err(|e| describe(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{} answered {status}", o.url));
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("{} sent more than {} MB", o.url, MAX_BODY >> 20));
        }
    }
    let text = String::from_utf8(body).map_err(|_| format!("{}: the body is not UTF-8", o.url))?;
    let at = origin.elapsed().as_secs_f64();
    frame_from_exposition(&text, at).map_err(|e| format!("{}: {e}", o.url))
}

/// What failed, from reqwest's error: its kind, then the innermost cause, which names what
/// actually happened (refused, unknown host, certificate, timeout).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

/// Starts the scraping thread: every refresh, one result goes to `send`, until the
/// receiver is gone.
pub fn start<T: Send + 'static>(
    o: RemoteOptions,
    send: Sender<T>,
    wrap: fn(Result<Frame, String>) -> T,
) -> Result<(), String> {
    let client = client(&o)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    std::thread::Builder::new()
        .name("scrape".into())
        .spawn(move || {
            let origin = Instant::now();
            let mut next = Instant::now();
            loop {
                let result = rt.block_on(scrape(&client, &o, origin));
                if send.send(wrap(result)).is_err() {
                    return;
                }
                next += o.refresh;
                let now = Instant::now();
                if next < now {
                    next = now + o.refresh;
                }
                std::thread::sleep(next - now);
            }
        })
        .map_err(|e| format!("cannot start the scrape thread: {e}"))?;
    Ok(())
}
