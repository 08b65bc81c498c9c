//! An HTTP client for one BMC: reqwest on rustls (kepler-crypto's provider), session or basic auth, a
//! timeout on every request, a cap on body size, and errors sorted by kind.
//!
//! Auth: the first request logs in (`POST /redfish/v1/SessionService/Sessions`) and reuses
//! the `X-Auth-Token`; a 401 with a token logs in again once and retries. A BMC that offers
//! no sessions (404/405/501, or an answer without a token, as `sushy-static` gives), or
//! refuses the login (401/403), gets basic auth instead; a 401 to basic auth is the auth
//! error. The session is deleted on shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;
use serde_json::Value;

use super::config::{BmcConfig, Secret};
use super::error::{FetchError, FetchErrorKind};
use super::model;

/// The standard place to open a session.
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";
const TOKEN_HEADER: &str = "X-Auth-Token";

/// Something that can GET a Redfish resource by path: the real client, or a file tree in tests.
pub trait Fetch: Sync {
    /// GETs `path` (no fragment) and parses it as a JSON object.
    fn get(
        &self,
        path: &str,
    ) -> impl std::future::Future<Output = Result<Value, FetchError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// Not decided yet: try a session first.
    Unknown,
    /// A session token and the session's path (for logout).
    Session {
        token: Secret,
        location: Option<String>,
    },
    /// The BMC has no sessions: basic auth on every request.
    Basic,
}

/// A client of one BMC.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    username: String,
    password: Secret,
    max_body: usize,
    auth: Mutex<Auth>,
}

/// A TLS verifier that accepts any certificate but still checks handshake signatures, for
/// BMCs with self-signed certificates when `insecure: true` is set.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(insecure: bool) -> Result<rustls::ClientConfig, String> {
    // kepler-crypto's provider (ring, or the FIPS module), given explicitly: the process-wide
    // default panics when two providers are linked.
    let provider = kepler_crypto::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_platform_verifier()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
    };
    Ok(config)
}

impl Client {
    /// A client for `bmc` whose every request ends within `timeout`.
    pub fn new(bmc: &BmcConfig, timeout: Duration, max_body: usize) -> Result<Client, String> {
        let tls = tls_config(bmc.insecure)?;
        // Redirects are followed only on the same host and port: a session token is a custom
        // header that reqwest would otherwise carry to another host.
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if same_origin && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .redirect(redirect)
            .user_agent(concat!("kepler-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            endpoint: bmc.endpoint.clone(),
            username: bmc.username.clone(),
            password: bmc.password.clone(),
            max_body,
            auth: Mutex::new(Auth::Unknown),
        })
    }

    fn auth(&self) -> Auth {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_auth(&self, a: Auth) {
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }

    /// True when a session is open.
    pub fn has_session(&self) -> bool {
        matches!(self.auth(), Auth::Session { .. })
    }

    fn request(&self, method: Method, path: &str, auth: &Auth) -> reqwest::RequestBuilder {
        let rb = self
            .http
            .request(method, format!("{}{}", self.endpoint, path))
            .header(reqwest::header::ACCEPT, "application/json");
        match auth {
            Auth::Session { token, .. } => match HeaderValue::from_str(token.expose()) {
                Ok(mut v) => {
                    // Like basic auth's header: never shown by Debug or HTTP-level tracing.
                    v.set_sensitive(true);
                    rb.header(TOKEN_HEADER, v)
                }
                Err(_) => rb,
            },
            Auth::Basic => rb.basic_auth(&self.username, Some(self.password.expose())),
            Auth::Unknown => rb,
        }
    }

    /// Opens a session; falls back to basic auth when the BMC has no session service.
    async fn login(&self) -> Result<(), FetchError> {
        let body = serde_json::json!({
            "UserName": self.username,
            "Password": self.password.expose(),
        });
        let resp = self
            .request(Method::POST, SESSIONS_PATH, &Auth::Unknown)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| classify(SESSIONS_PATH, &e))?;
        let status = resp.status();
        let token = resp
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(model::fetch_path);
        match (status, token) {
            (s, Some(token)) if s.is_success() => {
                self.set_auth(Auth::Session { token, location });
                Ok(())
            }
            (s, _) if s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED => Err(
                FetchError::new(FetchErrorKind::Server, SESSIONS_PATH, format!("login: {s}")),
            ),
            // 404, 405, 501, success without a token: no usable session service. 401/403:
            // wrong credentials, or a BMC whose auth layer refuses every request without
            // basic auth before a session service could answer (sushy-emulator); basic auth
            // tells the two apart, and a 401 to it is the auth error.
            _ => {
                tracing::debug!(endpoint = %self.endpoint, %status, "no Redfish session service; using basic auth");
                self.set_auth(Auth::Basic);
                Ok(())
            }
        }
    }

    /// GETs `path` and parses the body as a JSON object.
    pub async fn get_resource(&self, path: &str) -> Result<Value, FetchError> {
        if self.auth() == Auth::Unknown {
            self.login().await?;
        }
        let mut auth = self.auth();
        let mut resp = self.send_get(path, &auth).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && matches!(auth, Auth::Session { .. }) {
            // The session expired or was dropped by the BMC: log in again, once.
            self.set_auth(Auth::Unknown);
            self.login().await?;
            auth = self.auth();
            resp = self.send_get(path, &auth).await?;
        }
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED && auth == Auth::Basic {
            // Try a session again on the next poll: the refusal may have been the session
            // service's (e.g. too many sessions) rather than the credentials'.
            self.set_auth(Auth::Unknown);
        }
        if !status.is_success() {
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FetchErrorKind::Auth,
                StatusCode::NOT_FOUND => FetchErrorKind::NotFound,
                s if s.is_server_error() => FetchErrorKind::Server,
                _ => FetchErrorKind::Status,
            };
            return Err(FetchError::new(kind, path, format!("HTTP {status}")));
        }
        let body = self.read_body(path, resp).await?;
        model::parse_resource(&body).map_err(|m| FetchError::new(FetchErrorKind::Parse, path, m))
    }

    async fn send_get(&self, path: &str, auth: &Auth) -> Result<reqwest::Response, FetchError> {
        self.request(Method::GET, path, auth)
            .send()
            .await
            .map_err(|e| classify(path, &e))
    }

    async fn read_body(
        &self,
        path: &str,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || {
            FetchError::new(
                FetchErrorKind::TooLarge,
                path,
                format!("body larger than {} bytes", self.max_body),
            )
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large());
        }
        let delimited = resp.content_length().is_some();
        let mut body = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                // Embedded HTTP servers (sushy-static, many BMCs) end a body that has no
                // length by closing the TLS connection without close_notify. Such a body is
                // complete or truncated; a truncated one fails to parse as JSON below.
                Err(e) if !delimited && missing_close_notify(&e) => break,
                Err(e) => return Err(classify(path, &e)),
            };
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Deletes the open session, if any. Errors are ignored: the BMC expires it anyway.
    pub async fn logout(&self) {
        let auth = self.auth();
        if let Auth::Session {
            location: Some(location),
            ..
        } = &auth
        {
            match self.request(Method::DELETE, location, &auth).send().await {
                Ok(r) => {
                    tracing::debug!(endpoint = %self.endpoint, status = %r.status(), "Redfish session deleted")
                }
                Err(e) => {
                    tracing::debug!(endpoint = %self.endpoint, error = %classify(location, &e), "Redfish session not deleted")
                }
            }
        }
        self.set_auth(Auth::Unknown);
    }
}

impl Fetch for Client {
    fn get(
        &self,
        path: &str,
    ) -> impl std::future::Future<Output = Result<Value, FetchError>> + Send {
        self.get_resource(path)
    }
}

/// True when `e` is a TLS connection closed without `close_notify` (rustls's unexpected EOF).
fn missing_close_notify(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        src = s.source();
    }
    false
}

/// Sorts a reqwest error into a kind. The detail is the error chain, which holds the URL
/// (endpoint and path, never credentials: endpoints with user info are refused).
fn classify(path: &str, e: &reqwest::Error) -> FetchError {
    let mut chain = String::new();
    let mut tls = false;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        src = s.source();
    }
    // rustls errors reach reqwest wrapped in io::Error; their text is the only sign left.
    let lower = chain.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("tls handshake")
        || lower.contains("invalid peer")
    {
        tls = true;
    }
    let kind = if e.is_timeout() {
        FetchErrorKind::Timeout
    } else if tls {
        FetchErrorKind::Tls
    } else if e.is_connect() {
        FetchErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        FetchErrorKind::Body
    } else if e.is_request() {
        // The connection closed or reset before or during the response head.
        FetchErrorKind::Body
    } else {
        FetchErrorKind::Status
    };
    FetchError::new(kind, path, chain)
}
