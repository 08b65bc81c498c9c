//! The HTTP(S) server: `/metrics`, `/healthz`, `/readyz`, `/`.
//!
//! Scrapes only read the latest published [`Exposition`](crate::Exposition); nothing here
//! triggers a measurement. With basic auth configured, **every** path is protected, health
//! probes included, as exporter-toolkit does; probes must then send credentials (or use an
//! exec/TCP probe).

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::auth::{parse_basic, BasicAuth};
use crate::bearer::{parse_bearer, BearerAuth, BearerVerdict};
use crate::error::{ErrorKind, ExportError};
use crate::exposition::Format;
use crate::handle::MetricsHandle;
use crate::webconfig::WebConfig;

/// How long a client may take to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time open connections get to finish after shutdown.
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// Where and how to serve.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Listen addresses: `host:port`, `[v6]:port`, or `:port` for every interface.
    pub listen: Vec<String>,
    /// TLS and basic auth, from `--web.config-file`; `None` serves plain HTTP without auth.
    pub web: Option<WebConfig>,
}

/// A bound server: sockets are open (so bind errors surface before anything else starts) but
/// nothing is accepted until [`Server::run`].
pub struct Server {
    listeners: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<BasicAuth>>,
    bearer: Option<Arc<dyn BearerAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    drain: Duration,
}

#[derive(Debug)]
struct Shared {
    handle: MetricsHandle,
    auth: Option<Arc<BasicAuth>>,
    bearer: Option<Arc<dyn BearerAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field("bearer", &self.bearer)
            .field("drain", &self.drain)
            .finish()
    }
}

impl Server {
    /// Binds every listen address. The first address that fails is returned in the error.
    pub async fn bind(config: ServerConfig) -> Result<Server, ExportError> {
        if config.listen.is_empty() {
            return Err(ExportError::new(
                ErrorKind::NoListenAddress,
                "web.listenAddresses",
            ));
        }
        let mut listeners = Vec::with_capacity(config.listen.len());
        let mut addrs = Vec::with_capacity(config.listen.len());
        for a in &config.listen {
            let l = bind_one(a).await?;
            let local = l.local_addr().map_err(|e| bind_err(a, e))?;
            listeners.push(l);
            addrs.push(local);
        }
        let (tls, auth, headers) = match &config.web {
            Some(w) => (
                w.tls.clone().map(TlsAcceptor::from),
                w.auth.clone(),
                w.headers.clone(),
            ),
            None => (None, None, Arc::new(Vec::new())),
        };
        for a in &addrs {
            tracing::info!(address = %a, tls = tls.is_some(), basic_auth = auth.is_some(), "listening");
        }
        Ok(Server {
            listeners,
            addrs,
            tls,
            auth,
            bearer: None,
            headers,
            drain: DEFAULT_DRAIN,
        })
    }

    /// The bound addresses, in the order of [`ServerConfig::listen`] (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Checks scrapers' bearer tokens on `/metrics` (`web.auth.kubernetes`): no token 401,
    /// a token `auth` refuses 403. Other paths stay open for probes.
    pub fn with_bearer_auth(mut self, auth: Arc<dyn BearerAuth>) -> Server {
        self.bearer = Some(auth);
        self
    }

    /// How long open connections get to finish after shutdown (default 10 s); connections
    /// still open then are dropped.
    pub fn with_drain_timeout(mut self, drain: Duration) -> Server {
        self.drain = drain;
        self
    }

    /// Serves `handle` until `shutdown` completes, then stops accepting and lets open
    /// connections finish (up to the drain timeout).
    pub async fn run(
        self,
        handle: MetricsHandle,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ExportError> {
        let Server {
            listeners,
            addrs: _,
            tls,
            auth,
            bearer,
            headers,
            drain,
        } = self;
        let shared = Arc::new(Shared {
            handle,
            auth,
            bearer,
            headers,
        });
        let graceful = GracefulShutdown::new();
        let mut shutdown = Box::pin(shutdown);
        let mut next = 0usize;
        loop {
            // Accept on any listener, starting from a rotating index for fairness.
            let accept = std::future::poll_fn(|cx| {
                let n = listeners.len();
                for i in 0..n {
                    let idx = (next + i) % n;
                    if let Poll::Ready(r) = listeners[idx].poll_accept(cx) {
                        next = idx + 1;
                        return Poll::Ready(r);
                    }
                }
                Poll::Pending
            });
            tokio::select! {
                _ = &mut shutdown => break,
                res = accept => match res {
                    Ok((stream, peer)) => {
                        let watcher = graceful.watcher();
                        tokio::spawn(connection(stream, peer, tls.clone(), shared.clone(), watcher));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                },
            }
        }
        drop(listeners);
        tracing::info!(
            connections = graceful.count(),
            "shutting down; draining connections"
        );
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain,
                "connections still open after the drain timeout; closing them"
            );
        }
        Ok(())
    }
}

/// Binds every address in `config.listen`, then serves `handle` until `shutdown` completes and
/// drains open connections. Bind errors are returned (with the address) before serving.
pub async fn serve(
    config: ServerConfig,
    handle: MetricsHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ExportError> {
    Server::bind(config).await?.run(handle, shutdown).await
}

fn bind_err(address: &str, e: impl std::fmt::Display) -> ExportError {
    ExportError::new(
        ErrorKind::Bind {
            address: address.to_string(),
            detail: e.to_string(),
        },
        "web.listenAddresses",
    )
}

fn addr_err(address: &str, detail: impl Into<String>) -> ExportError {
    ExportError::new(
        ErrorKind::ListenAddress {
            address: address.to_string(),
            detail: detail.into(),
        },
        "web.listenAddresses",
    )
}

async fn bind_one(address: &str) -> Result<TcpListener, ExportError> {
    let a = address.trim();
    if let Some(port) = a.strip_prefix(':') {
        // `:port`, as in Go: every interface. Dual-stack `[::]` first, IPv4 when the host
        // has no IPv6.
        let port: u16 = port
            .parse()
            .map_err(|_| addr_err(address, "port must be a number from 0 to 65535"))?;
        return match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(l) => Ok(l),
            Err(e6) if e6.kind() != std::io::ErrorKind::AddrInUse => {
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                    .await
                    .map_err(|e| bind_err(address, e))
            }
            Err(e) => Err(bind_err(address, e)),
        };
    }
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return TcpListener::bind(sa)
            .await
            .map_err(|e| bind_err(address, e));
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(addr_err(address, "expected host:port or :port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(addr_err(address, "expected host:port or :port"));
    }
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(a)
        .await
        .map_err(|e| addr_err(address, format!("cannot resolve host: {e}")))?
        .collect();
    let mut last = None;
    for sa in resolved {
        match TcpListener::bind(sa).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => bind_err(address, e),
        None => addr_err(address, "host resolved to no address"),
    })
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(stream, peer, shared, watcher).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve_io(s, peer, shared, watcher).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(req, &shared).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

type Resp = Response<Full<Bytes>>;

fn simple(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>Kepler exporter</title></head>\n<body><h1>Kepler exporter</h1>\n<ul>\n<li><a href=\"/metrics\">/metrics</a>: energy and power metrics</li>\n<li><a href=\"/healthz\">/healthz</a>: liveness</li>\n<li><a href=\"/readyz\">/readyz</a>: readiness (first measurement done)</li>\n</ul>\n</body></html>\n";

async fn respond(req: Request<Incoming>, shared: &Shared) -> Resp {
    let mut resp = route(req, shared).await;
    for (k, v) in shared.headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Resp {
    if let Some(auth) = &shared.auth {
        if !authorized(auth, &req).await {
            let mut r = simple(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kepler\""),
            );
            return r;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = simple(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            if let Some(denied) = bearer_denied(shared, &req).await {
                return denied;
            }
            metrics(&req, shared).await
        }
        "/healthz" => simple(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if shared.handle.is_ready() {
                simple(StatusCode::OK, "ready\n")
            } else {
                simple(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/" => {
            let mut r = Response::new(Full::new(Bytes::from_static(INDEX.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        _ => simple(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The refusal for `/metrics` when bearer auth is on and the token does not pass.
async fn bearer_denied(shared: &Shared, req: &Request<Incoming>) -> Option<Resp> {
    let bearer = shared.bearer.as_ref()?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| parse_bearer(v.as_bytes()));
    let verdict = match token {
        Some(t) => bearer.check(t).await,
        None => BearerVerdict::Unauthenticated,
    };
    match verdict {
        BearerVerdict::Allowed => None,
        BearerVerdict::Forbidden => Some(simple(StatusCode::FORBIDDEN, "forbidden\n")),
        BearerVerdict::Unavailable => Some(simple(
            StatusCode::SERVICE_UNAVAILABLE,
            "token review unavailable\n",
        )),
        BearerVerdict::Unauthenticated => {
            let mut r = simple(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kepler\""),
            );
            Some(r)
        }
    }
}

async fn authorized(auth: &Arc<BasicAuth>, req: &Request<Incoming>) -> bool {
    let Some((user, password)) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| parse_basic(v.as_bytes()))
    else {
        return false;
    };
    if auth.is_cached(&user, &password) {
        return true;
    }
    // bcrypt takes tens of milliseconds: keep it off the async workers.
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || auth.verify(&user, &password))
        .await
        .unwrap_or(false)
}

async fn metrics(req: &Request<Incoming>, shared: &Shared) -> Resp {
    if let Some(refresh) = shared.handle.refresher() {
        // Read on scrape: the monitor ticks unless its latest data is fresh enough.
        let _ = tokio::task::spawn_blocking(move || refresh()).await;
    }
    let Some(exp) = shared.handle.latest() else {
        return simple(
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics yet: the first measurement has not completed\n",
        );
    };
    let format = negotiate_format(req.headers().get(header::ACCEPT));
    let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
    let body = match exp.cached_body(format, gzip) {
        Some(b) => b.clone(),
        None => {
            // First request for this variant: compress or convert once, off the async
            // workers; the result is cached in the exposition for every later scrape.
            let e = exp.clone();
            match tokio::task::spawn_blocking(move || e.body(format, gzip).clone()).await {
                Ok(b) => b,
                Err(_) => exp.body(format, gzip).clone(),
            }
        }
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    r
}

/// Splits a header list into (value, q) items.
fn items(v: &str) -> impl Iterator<Item = (&str, f32)> {
    v.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let value = parts.next()?.trim();
        if value.is_empty() {
            return None;
        }
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        Some((value, q))
    })
}

/// OpenMetrics when the client prefers it (by q-value) over the text format, else text.
fn negotiate_format(accept: Option<&HeaderValue>) -> Format {
    let Some(v) = accept.and_then(|v| v.to_str().ok()) else {
        return Format::Text;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for (media, q) in items(v) {
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            om = om.max(q);
        } else if media.eq_ignore_ascii_case("text/plain")
            || media.eq_ignore_ascii_case("text/*")
            || media == "*/*"
        {
            text = text.max(q);
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

fn accepts_gzip(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .is_some_and(|v| items(v).any(|(coding, q)| coding.eq_ignore_ascii_case("gzip") && q > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn format_negotiation() {
        assert_eq!(negotiate_format(None), Format::Text);
        assert_eq!(negotiate_format(Some(&hv("*/*"))), Format::Text);
        assert_eq!(
            negotiate_format(Some(&hv("application/openmetrics-text; version=1.0.0"))),
            Format::OpenMetrics
        );
        // What Prometheus 2.42 sends.
        assert_eq!(
            negotiate_format(Some(&hv("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"))),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate_format(Some(&hv(
                "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"
            ))),
            Format::Text
        );
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some(&hv("gzip"))));
        assert!(accepts_gzip(Some(&hv("deflate, GZIP;q=0.5"))));
        assert!(!accepts_gzip(Some(&hv("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&hv("identity"))));
        assert!(!accepts_gzip(None));
    }
}
