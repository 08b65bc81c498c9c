//! `web.auth.kubernetes`: who may read `/metrics`, asked of the API server. A scraper's bearer
//! token is authenticated with a TokenReview; its user must be one of the allowed service
//! accounts **and** pass a SubjectAccessReview for `get` on the non-resource URL `/metrics`
//! (what kube-rbac-proxy checks), so RBAC stays the authority and the allow-list narrows it.
//! Answers are cached briefly (a scrape every 15-30 s would otherwise cost two API requests
//! each); failures to reach the API server are not cached.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kepler_crypto::Sha256;
use kube::api::{Api, PostParams};
use kube::Client;

/// Most cached answers; the cache is cleared when full.
const CACHE_MAX: usize = 1024;

/// The outcome for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// Allowed service account with RBAC permission.
    Allowed,
    /// Valid token, but not allowed.
    Forbidden,
    /// Not a valid token.
    Unauthenticated,
    /// The API server could not be asked.
    Unavailable,
}

/// Checks bearer tokens against the API server, with a short cache.
pub struct TokenReviewer {
    client: Client,
    /// `system:serviceaccount:<namespace>:<name>` of each allowed service account.
    allowed: HashSet<String>,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (TokenVerdict, Instant)>>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("allowed", &self.allowed)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// An `allowedSANames` entry that is not `namespace:name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not namespace:serviceaccount")]
pub struct BadServiceAccountName(pub String);

impl TokenReviewer {
    /// A reviewer allowing `allowed` (`namespace:name` each), caching answers for `ttl`.
    pub fn new(
        client: Client,
        allowed: &[String],
        ttl: Duration,
    ) -> Result<TokenReviewer, BadServiceAccountName> {
        let allowed = allowed
            .iter()
            .map(|sa| match sa.split_once(':') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
                    Ok(format!("system:serviceaccount:{ns}:{name}"))
                }
                _ => Err(BadServiceAccountName(sa.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(TokenReviewer {
            client,
            allowed,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A reviewer on the client of `kubeconfig` (or the pod's service account).
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        allowed: &[String],
        ttl: Duration,
    ) -> Result<TokenReviewer, crate::StartError> {
        let cfg = crate::load_client_config(kubeconfig).await?;
        let client = Client::try_from(cfg).map_err(crate::StartError::Client)?;
        TokenReviewer::new(client, allowed, ttl)
            .map_err(|e| crate::StartError::ServiceAccountName(e.0))
    }

    /// The verdict for `token`, from the cache or the API server.
    pub async fn review(&self, token: &str) -> TokenVerdict {
        let key = Sha256::digest(token.as_bytes());
        if let Some((v, at)) = self.lock().get(&key) {
            if at.elapsed() < self.ttl {
                return *v;
            }
        }
        let verdict = self.ask(token).await;
        if verdict != TokenVerdict::Unavailable {
            let mut cache = self.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (verdict, Instant::now()));
        }
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (TokenVerdict, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, token: &str) -> TokenVerdict {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let answer = match Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed");
                return TokenVerdict::Unavailable;
            }
        };
        let status = answer.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return TokenVerdict::Unauthenticated;
        };
        let username = user.username.clone().unwrap_or_default();
        if !self.allowed.contains(&username) {
            return TokenVerdict::Forbidden;
        }
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(username),
                groups: user.groups,
                uid: user.uid,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &sar)
            .await
        {
            Ok(a) if a.status.as_ref().is_some_and(|s| s.allowed) => TokenVerdict::Allowed,
            Ok(_) => TokenVerdict::Forbidden,
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                TokenVerdict::Unavailable
            }
        }
    }
}
