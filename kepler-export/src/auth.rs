//! HTTP basic auth against bcrypt hashes, with a cache of successful checks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;
use kepler_crypto::Sha256;

/// Most cached successful logins; the cache is cleared when full (a scraper re-pays one
/// bcrypt verify).
const CACHE_MAX: usize = 1024;

/// Users and their bcrypt hashes, as `basic_auth_users` gives them.
pub(crate) struct BasicAuth {
    users: HashMap<String, String>,
    /// Verified for unknown users, so a miss costs about as much as a wrong password.
    dummy: String,
    /// Random per process, so the cache holds nothing an attacker could precompute.
    salt: [u8; 32],
    /// Salted SHA-256 of (user, password) pairs that passed bcrypt. bcrypt costs ~60 ms per
    /// verify at cost 10; without this every scrape would pay it.
    cache: Mutex<HashSet<[u8; 32]>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("BasicAuth")
            .field("users", &users)
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Builds the checker. Hashes must already be validated. `dummy_cost` is the bcrypt cost
    /// of the dummy hash (match the users' cost so unknown users take as long).
    pub(crate) fn new(users: HashMap<String, String>, dummy_cost: u32) -> BasicAuth {
        let mut salt = [0u8; 32];
        let mut pw = [0u8; 16];
        // A system RNG failure is not recoverable here; fall back to a fixed salt, which only
        // weakens the in-memory cache keys, never the check itself.
        let _ = kepler_crypto::fill_random(&mut salt);
        let _ = kepler_crypto::fill_random(&mut pw);
        // bcrypt::hash fails only for a cost outside 4..=31; an empty dummy then fails fast,
        // which costs only the timing equalisation.
        let dummy = bcrypt::hash(pw, dummy_cost.clamp(4, 14)).unwrap_or_default();
        BasicAuth {
            users,
            dummy,
            salt,
            cache: Mutex::new(HashSet::new()),
        }
    }

    fn key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.salt)
            .update(&(user.len() as u64).to_le_bytes())
            .update(user.as_bytes())
            .update(password);
        h.finish()
    }

    /// True when this (user, password) passed before: no bcrypt needed.
    pub(crate) fn is_cached(&self, user: &str, password: &[u8]) -> bool {
        let key = self.key(user, password);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
    }

    /// Full check: cache, else bcrypt (slow: call it off the async workers).
    pub(crate) fn verify(&self, user: &str, password: &[u8]) -> bool {
        let key = self.key(user, password);
        if self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return true;
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// Splits an `Authorization: Basic ...` header value into user and password.
pub(crate) fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let s = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_and_caches() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new(HashMap::from([("alice".to_string(), hash)]), 4);
        assert!(!auth.is_cached("alice", b"secret"));
        assert!(auth.verify("alice", b"secret"));
        assert!(auth.is_cached("alice", b"secret"));
        assert!(!auth.verify("alice", b"wrong"));
        assert!(!auth.is_cached("alice", b"wrong"));
        assert!(!auth.verify("bob", b"secret"));
        assert!(!format!("{auth:?}").contains("$2"));
    }

    #[test]
    fn parses_basic_header() {
        // "alice:pa:ss" -> the password may contain colons.
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            parse_basic(v.as_bytes()),
            Some(("alice".to_string(), b"pa:ss".to_vec()))
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }
}
