//! `carbon.*` (issue 20, section 3): the grid carbon intensity, and with it the
//! `kepler_*_co2e_grams_total` counters. Off unless `carbon.intensity` is set.

use kepler_sources::carbon::{IntensityOptions, IntensitySpec};

use super::keys::*;
use super::{err, ConfigError, RawConfig};

/// `carbon.*`, flags over the file; `None` when `carbon.intensity` is not set (or empty).
/// The other keys set without it only warn.
pub fn carbon(
    raw: &RawConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<IntensityOptions>, ConfigError> {
    let Some(text) = raw
        .get::<String>(&CARBON_INTENSITY)?
        .filter(|s| !s.trim().is_empty())
    else {
        for key in [
            &CARBON_REFRESH_INTERVAL,
            &CARBON_STALE_AFTER,
            &CARBON_HTTP_TIMEOUT,
        ] {
            if raw.is_set(key) {
                warnings.push(format!(
                    "config key \"{}\" has no effect unless carbon.intensity is set",
                    key.path
                ));
            }
        }
        return Ok(None);
    };
    let spec = IntensitySpec::parse(&text).map_err(|e| err(CARBON_INTENSITY.path, e))?;
    Ok(Some(IntensityOptions {
        spec,
        refresh: raw.value(&CARBON_REFRESH_INTERVAL)?,
        stale_after: raw.value(&CARBON_STALE_AFTER)?,
        http_timeout: raw.value(&CARBON_HTTP_TIMEOUT)?,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::tests::build;
    use super::*;

    /// Issue 20: `carbon.intensity: 400` as written in the issue, a file, a URL, the
    /// defaults of the other keys, and errors that name the key.
    #[test]
    fn keys_flags_and_defaults_issue_20() {
        let c = build(&[], None).unwrap();
        assert_eq!(c.carbon, None);
        assert!(c.warnings.is_empty());

        let c = build(&[], Some("carbon:\n  intensity: ''\n")).unwrap();
        assert_eq!(c.carbon, None, "empty is off");
        let c = build(&[], Some("carbon:\n  intensity: 400\n")).unwrap();
        let o = c.carbon.unwrap();
        assert_eq!(o.spec, IntensitySpec::Constant(400.0));
        assert_eq!(o.refresh, Duration::from_secs(60));
        assert_eq!(o.stale_after, Duration::from_secs(7200));
        assert_eq!(o.http_timeout, Duration::from_secs(10));
        assert_eq!(o, IntensityOptions::new(IntensitySpec::Constant(400.0)));

        let c = build(
            &[
                "--carbon.intensity=/var/lib/kepler/ci.json",
                "--carbon.refresh-interval=30s",
            ],
            Some("carbon:\n  intensity: 400\n  staleAfter: 45m\n"),
        )
        .unwrap();
        let o = c.carbon.unwrap();
        assert_eq!(
            o.spec,
            IntensitySpec::File(PathBuf::from("/var/lib/kepler/ci.json"))
        );
        assert_eq!(o.refresh, Duration::from_secs(30));
        assert_eq!(o.stale_after, Duration::from_secs(45 * 60));

        let c = build(
            &[],
            Some("carbon:\n  intensity: https://grid.example/ci\n  httpTimeout: 2s\n"),
        )
        .unwrap();
        let o = c.carbon.unwrap();
        assert_eq!(o.spec, IntensitySpec::Url("https://grid.example/ci".into()));
        assert_eq!(o.http_timeout, Duration::from_secs(2));

        for (args, file, says) in [
            (&["--carbon.intensity=-1"][..], None, "-1"),
            (&[][..], Some("carbon:\n  intensity: ftp://x/ci\n"), "ftp"),
            (
                &["--carbon.intensity=400", "--carbon.refresh-interval=0s"][..],
                None,
                "",
            ),
        ] {
            let e = build(args, file).unwrap_err();
            assert!(e.key.starts_with("carbon."), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let e = build(&["--carbon.intensity=-1"], None).unwrap_err();
        assert_eq!(e.key, "carbon.intensity");
    }

    #[test]
    fn other_keys_without_intensity_warn_issue_20() {
        let c = build(&["--carbon.stale-after=1h"], None).unwrap();
        assert_eq!(c.carbon, None);
        assert_eq!(
            c.warnings,
            ["config key \"carbon.staleAfter\" has no effect unless carbon.intensity is set"]
        );
    }
}
