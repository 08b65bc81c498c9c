//! Bearer-token authorization of `/metrics` (`web.auth.kubernetes`): the server asks a
//! [`BearerAuth`] about each scraper's token. The Kubernetes implementation (TokenReview +
//! SubjectAccessReview) lives in kepler-k8s; this crate knows only the verdicts, so it stays
//! free of any API client. Health probes stay open: the kubelet sends no token.

use std::future::Future;
use std::pin::Pin;

/// What a [`BearerAuth`] says about one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerVerdict {
    /// The token's subject may read `/metrics` (200).
    Allowed,
    /// A valid token whose subject may not (403).
    Forbidden,
    /// Not a valid token (401).
    Unauthenticated,
    /// The check itself failed, e.g. the API server is unreachable (503).
    Unavailable,
}

/// Decides whether a bearer token may read `/metrics`.
pub trait BearerAuth: Send + Sync + std::fmt::Debug + 'static {
    /// Checks `token` (without the `Bearer ` prefix).
    fn check<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = BearerVerdict> + Send + 'a>>;
}

/// The token of an `Authorization: Bearer <token>` header value.
pub(crate) fn parse_bearer(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(parse_bearer(b"Bearer abc.def"), Some("abc.def"));
        assert_eq!(parse_bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(parse_bearer(b"Basic abc"), None);
        assert_eq!(parse_bearer(b"Bearer "), None);
    }
}
