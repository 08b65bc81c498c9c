//! The one place that picks kepler's cryptography: rustls's ring provider by default, the
//! aws-lc FIPS module (through aws-lc-rs) with the `fips` feature (issue 16).
//!
//! The other crates take their TLS provider, SHA-256 and random bytes from here and name no
//! provider themselves, so a `fips` build links no other cryptography: ring is out of its
//! dependency graph, and [`check_fips_mode`] refuses to start when the module is not in
//! FIPS mode.

use std::sync::{Arc, OnceLock};

use rustls::crypto::hash::{Context, Hash, HashAlgorithm};
use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

#[cfg(not(any(feature = "ring", feature = "fips")))]
compile_error!(
    "kepler-crypto needs a provider: the `ring` feature (kepler-bin's and kepler-operator's \
     default) or `fips`"
);

/// Whether this is a `fips` build: `kepler_build_info{fips="true"}`.
pub const FIPS_BUILD: bool = cfg!(feature = "fips");

/// The provider every TLS client and server of kepler is built with (the FIPS one wins when
/// a test build has both features).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build_provider())).clone()
}

#[cfg(feature = "fips")]
fn build_provider() -> CryptoProvider {
    rustls::crypto::default_fips_provider()
}

#[cfg(all(feature = "ring", not(feature = "fips")))]
fn build_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Makes [`provider`] the process default, for clients that call `ClientConfig::builder()`
/// themselves (kube-rs). Idempotent; a default someone installed earlier is left alone.
pub fn install_process_default() {
    let _ = CryptoProvider::install_default(provider().as_ref().clone());
}

/// The FIPS build is running in FIPS mode, or this is not a FIPS build.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "built with the `fips` feature, but the aws-lc FIPS module is not in FIPS mode (its \
     self-tests failed or the wrong library is linked); refusing to start"
)]
pub struct NotInFipsMode;

/// Checked at start by the binaries: a `fips` build whose module does not report FIPS mode
/// must not serve or scrape anything.
pub fn check_fips_mode() -> Result<(), NotInFipsMode> {
    fips_verdict(FIPS_BUILD, provider().fips())
}

fn fips_verdict(fips_build: bool, module_in_fips_mode: bool) -> Result<(), NotInFipsMode> {
    if fips_build && !module_in_fips_mode {
        return Err(NotInFipsMode);
    }
    Ok(())
}

/// Fills `buf` from the provider's random generator (the module's DRBG in a FIPS build).
pub fn fill_random(buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
    provider().secure_random.fill(buf)
}

/// SHA-256 from the provider (the module's in a FIPS build), so no second hash
/// implementation is linked for the caches' keys.
pub struct Sha256(Box<dyn Context>);

impl Sha256 {
    /// An empty digest.
    pub fn new() -> Sha256 {
        Sha256(sha256_provider().start())
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) -> &mut Sha256 {
        self.0.update(data);
        self
    }

    /// The 32-byte digest.
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }

    /// The digest of `data` in one call.
    pub fn digest(data: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(data);
        h.finish()
    }
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

/// The SHA-256 of the provider's TLS 1.3 suites; both providers have one
/// (TLS13_AES_128_GCM_SHA256), which a test checks.
fn sha256_provider() -> &'static dyn Hash {
    static HASH: OnceLock<&'static dyn Hash> = OnceLock::new();
    *HASH.get_or_init(|| {
        provider()
            .cipher_suites
            .iter()
            .find_map(|s| match s {
                SupportedCipherSuite::Tls13(s)
                    if s.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
                {
                    Some(s.common.hash_provider)
                }
                _ => None,
            })
            .expect("both providers have a TLS 1.3 suite on SHA-256")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        fn hex(b: [u8; 32]) -> String {
            b.iter().map(|b| format!("{b:02x}")).collect()
        }
        assert_eq!(
            hex(Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Sha256::new();
        h.update(b"a").update(b"bc");
        assert_eq!(
            hex(h.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_bytes_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_build_runs_in_the_mode_it_claims() {
        // A fips build must report FIPS mode from the module itself; a ring build never does.
        assert_eq!(provider().fips(), FIPS_BUILD);
        assert_eq!(check_fips_mode(), Ok(()));
    }

    #[test]
    fn a_fips_build_out_of_fips_mode_is_refused() {
        assert_eq!(fips_verdict(true, false), Err(NotInFipsMode));
        assert_eq!(fips_verdict(true, true), Ok(()));
        assert_eq!(fips_verdict(false, false), Ok(()));
        assert!(NotInFipsMode.to_string().contains("refusing to start"));
    }

    #[test]
    fn fips_provider_offers_no_chacha() {
        let names: Vec<String> = provider()
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            names.iter().any(|n| n.contains("CHACHA20")),
            !FIPS_BUILD,
            "{names:?}"
        );
    }
}
