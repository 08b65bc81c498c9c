//! The Prometheus exporter-toolkit web config file (`--web.config-file`): TLS and basic auth.
//!
//! Format (exporter-toolkit's `web-configuration.md`):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # or `cert:` with inline PEM
//!   key_file: server.key         # or `key:` with inline PEM
//!   client_auth_type: RequireAndVerifyClientCert   # optional, default NoClientCert
//!   client_ca_file: ca.crt       # needed when client certificates are verified
//!   min_version: TLS12           # optional: TLS12 | TLS13
//!   max_version: TLS13           # optional: TLS12 | TLS13
//! http_server_config:
//!   headers: { X-Frame-Options: deny }   # added to every response
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt hash
//! ```
//!
//! Relative file paths are resolved against the config file's directory, as exporter-toolkit
//! does. **Unknown keys are rejected** (exporter-toolkit parses strictly too): a typo in a
//! security setting must not silently weaken it. Keys of the format that this server does not
//! implement are handled by what they mean: `cipher_suites`, `curve_preferences`,
//! `prefer_server_cipher_suites` and `http_server_config.http2` are accepted with a warning
//! (rustls offers only modern suites and groups, and this server speaks HTTP/1.1), while
//! `client_allowed_sans` and the client auth types that skip verification are rejected, since
//! ignoring them would accept clients the file meant to refuse. As in exporter-toolkit, a
//! `tls_server_config` with neither certificate nor key means plain HTTP.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::auth::BasicAuth;
use crate::error::{ErrorKind, ExportError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<IgnoredAny>,
    curve_preferences: Option<IgnoredAny>,
    prefer_server_cipher_suites: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A loaded and checked web config: a ready TLS configuration, basic-auth users, extra
/// response headers. Build it with [`WebConfig::from_file`] before anything starts, so a bad
/// file stops the program with an error naming the file and key.
#[derive(Clone)]
pub struct WebConfig {
    path: PathBuf,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) auth: Option<Arc<BasicAuth>>,
    pub(crate) headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field("headers", &self.headers)
            .finish()
    }
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Which TLS versions to offer, from `min_version` / `max_version`; `None` means rustls' safe
/// defaults (1.2 and 1.3).
fn versions(
    min: Option<&str>,
    max: Option<&str>,
    ctx: &str,
) -> Result<Option<&'static [&'static rustls::SupportedProtocolVersion]>, ExportError> {
    // 12 or 13; TLS 1.0 and 1.1 are not implemented by rustls.
    let parse = |key: &str, v: Option<&str>| -> Result<Option<u8>, ExportError> {
        match v {
            None => Ok(None),
            Some(s) => match s.trim() {
                "TLS12" => Ok(Some(12)),
                "TLS13" => Ok(Some(13)),
                "TLS10" | "TLS11" => Err(value_err(
                    ctx,
                    key,
                    format!(
                        "{s} is not supported (TLS 1.0 and 1.1 are insecure); use TLS12 or TLS13"
                    ),
                )),
                other => Err(value_err(
                    ctx,
                    key,
                    format!("unknown TLS version {other:?}; accepted: TLS12, TLS13"),
                )),
            },
        }
    };
    let min = parse("tls_server_config.min_version", min)?.unwrap_or(12);
    let max = parse("tls_server_config.max_version", max)?.unwrap_or(13);
    match (min, max) {
        (12, 13) => Ok(None),
        (13, 13) => Ok(Some(TLS13_ONLY)),
        (12, 12) => Ok(Some(TLS12_ONLY)),
        _ => Err(value_err(
            ctx,
            "tls_server_config.max_version",
            "max_version is lower than min_version".into(),
        )),
    }
}

fn value_err(ctx: &str, key: &str, detail: String) -> ExportError {
    ExportError::new(
        ErrorKind::WebConfigValue {
            key: key.into(),
            detail,
        },
        ctx,
    )
}

fn read_err(ctx: &str, path: &Path, e: impl fmt::Display) -> ExportError {
    ExportError::new(
        ErrorKind::Read {
            path: path.display().to_string(),
            detail: e.to_string(),
        },
        ctx,
    )
}

impl WebConfig {
    /// Loads and checks an exporter-toolkit web config file: reads the certificate chain, key
    /// and client CA it names, validates the bcrypt hashes and builds the TLS configuration.
    pub fn from_file(path: &Path) -> Result<WebConfig, ExportError> {
        let ctx = format!("web config {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| read_err(&ctx, path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, base, &ctx, path)
    }

    /// Parses web config YAML; relative paths are resolved against `base_dir`.
    pub fn from_yaml(yaml: &str, base_dir: &Path) -> Result<WebConfig, ExportError> {
        WebConfig::parse(yaml, base_dir, "web config", Path::new("<inline>"))
    }

    fn parse(yaml: &str, base: &Path, ctx: &str, path: &Path) -> Result<WebConfig, ExportError> {
        // An empty file is a valid, empty config (plain HTTP, no auth).
        let raw: RawWebConfig = if yaml.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| {
                ExportError::new(
                    ErrorKind::WebConfigSyntax {
                        detail: e.to_string(),
                    },
                    ctx,
                )
            })?
        };
        let tls = match raw.tls_server_config {
            Some(t) => tls_config(t, base, ctx)?,
            None => None,
        };
        let auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => Some(Arc::new(basic_auth(users, ctx)?)),
            _ => None,
        };
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2.is_some() {
                tracing::warn!(config = %path.display(), "http_server_config.http2 is ignored: this server speaks HTTP/1.1");
            }
            for (k, v) in http.headers.unwrap_or_default() {
                let key = format!("http_server_config.headers.{k}");
                let name = HeaderName::from_str(&k)
                    .map_err(|e| value_err(ctx, &key, format!("invalid header name: {e}")))?;
                let value = HeaderValue::from_str(&v)
                    .map_err(|e| value_err(ctx, &key, format!("invalid header value: {e}")))?;
                headers.push((name, value));
            }
        }
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            auth,
            headers: Arc::new(headers),
        })
    }

    /// True when the server will speak TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// True when requests need basic auth.
    pub fn basic_auth_enabled(&self) -> bool {
        self.auth.is_some()
    }

    /// The file this config came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn basic_auth(users: BTreeMap<String, String>, ctx: &str) -> Result<BasicAuth, ExportError> {
    let mut cost = 10;
    let mut map = HashMap::with_capacity(users.len());
    for (i, (user, hash)) in users.into_iter().enumerate() {
        let key = format!("basic_auth_users.{user}");
        if user.contains(':') {
            return Err(value_err(
                ctx,
                &key,
                "a user name cannot contain ':' (basic auth splits user and password there)".into(),
            ));
        }
        let parts = bcrypt::HashParts::from_str(hash.trim()).map_err(|e| {
            value_err(
                ctx,
                &key,
                format!(
                    "not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':'`"
                ),
            )
        })?;
        if i == 0 {
            cost = parts.get_cost();
        }
        map.insert(user, hash.trim().to_string());
    }
    Ok(BasicAuth::new(map, cost))
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// PEM text from an inline key or a file key; `None` when neither is set.
fn pem_source(
    inline: Option<String>,
    file: Option<String>,
    inline_key: &str,
    file_key: &str,
    base: &Path,
    ctx: &str,
) -> Result<Option<(Vec<u8>, String)>, ExportError> {
    let inline = inline.filter(|s| !s.trim().is_empty());
    let file = file.filter(|s| !s.trim().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(value_err(
            ctx,
            &format!("tls_server_config.{file_key}"),
            format!("set either {inline_key} or {file_key}, not both"),
        )),
        (Some(pem), None) => Ok(Some((
            pem.into_bytes(),
            format!("tls_server_config.{inline_key}"),
        ))),
        (None, Some(f)) => {
            let path = resolve(base, &f);
            let bytes = std::fs::read(&path).map_err(|e| read_err(ctx, &path, e))?;
            Ok(Some((
                bytes,
                format!("tls_server_config.{file_key} ({})", path.display()),
            )))
        }
        (None, None) => Ok(None),
    }
}

fn tls_config(
    t: RawTls,
    base: &Path,
    ctx: &str,
) -> Result<Option<Arc<rustls::ServerConfig>>, ExportError> {
    if t.cipher_suites.is_some() || t.prefer_server_cipher_suites.is_some() {
        tracing::warn!(config = ctx, "tls_server_config.cipher_suites and prefer_server_cipher_suites are ignored: rustls offers only modern AEAD suites");
    }
    if t.curve_preferences.is_some() {
        tracing::warn!(
            config = ctx,
            "tls_server_config.curve_preferences is ignored: rustls picks among modern groups"
        );
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return Err(value_err(
            ctx,
            "tls_server_config.client_allowed_sans",
            "not supported by this exporter; remove it or restrict clients by client_ca_file"
                .into(),
        ));
    }
    let cert = pem_source(t.cert, t.cert_file, "cert", "cert_file", base, ctx)?;
    let key = pem_source(t.key, t.key_file, "key", "key_file", base, ctx)?;
    let (cert, key) = match (cert, key) {
        (None, None) => {
            tracing::warn!(
                config = ctx,
                "tls_server_config has no certificate or key: serving plain HTTP"
            );
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(value_err(
                ctx,
                "tls_server_config.key_file",
                "missing: a certificate needs its private key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(value_err(
                ctx,
                "tls_server_config.cert_file",
                "missing: a private key needs its certificate".into(),
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert.0)
        .collect::<Result<_, _>>()
        .map_err(|e| value_err(ctx, &cert.1, format!("bad PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(value_err(ctx, &cert.1, "no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key.0)
        .map_err(|e| value_err(ctx, &key.1, format!("no usable private key: {e}")))?;

    // Always with an explicit provider (kepler-crypto's: ring, or the FIPS module): if two
    // providers end up in the dependency graph, `ServerConfig::builder()` panics.
    let provider = kepler_crypto::provider();
    let versions = versions(t.min_version.as_deref(), t.max_version.as_deref(), ctx)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone());
    let builder = match versions {
        None => builder.with_safe_default_protocol_versions(),
        Some(v) => builder.with_protocol_versions(v),
    }
    .map_err(|e| tls_err(ctx, e))?;

    let auth_type = t
        .client_auth_type
        .as_deref()
        .unwrap_or("NoClientCert")
        .trim();
    let ca = pem_source(
        t.client_ca,
        t.client_ca_file,
        "client_ca",
        "client_ca_file",
        base,
        ctx,
    )?;
    let key_name = "tls_server_config.client_auth_type";
    let builder = match auth_type {
        "" | "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some((pem, what)) = ca else {
                return Err(value_err(
                    ctx,
                    "tls_server_config.client_ca_file",
                    format!("required when client_auth_type is {auth_type}"),
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| value_err(ctx, &what, format!("bad PEM certificate: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| value_err(ctx, &what, format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(value_err(ctx, &what, "no CERTIFICATE block found".into()));
            }
            let mut vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth_type == "VerifyClientCertIfGiven" {
                vb = vb.allow_unauthenticated();
            }
            let verifier = vb.build().map_err(|e| tls_err(ctx, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(value_err(
                ctx,
                key_name,
                format!("{auth_type} (unverified client certificates) is not supported; use RequireAndVerifyClientCert, VerifyClientCertIfGiven or NoClientCert"),
            ))
        }
        other => {
            return Err(value_err(
                ctx,
                key_name,
                format!("unknown value {other:?}; accepted: NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        tls_err(
            ctx,
            format!("certificate and key do not form a usable pair: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // rustls's own check that the server runs in FIPS mode: the module's algorithms only, and
    // the TLS settings NIST asks for (extended master secret on TLS 1.2).
    if kepler_crypto::FIPS_BUILD && !config.fips() {
        return Err(tls_err(
            ctx,
            "this fips build's TLS server configuration is not in FIPS mode",
        ));
    }
    Ok(Some(Arc::new(config)))
}

fn tls_err(ctx: &str, e: impl fmt::Display) -> ExportError {
    ExportError::new(
        ErrorKind::Tls {
            detail: e.to_string(),
        },
        ctx,
    )
}
