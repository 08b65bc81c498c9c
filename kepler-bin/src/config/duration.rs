//! Go-style durations (`5s`, `500ms`, `1m30s`), as Kepler's config and flags write them.

use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` parts with units `ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`; a bare `0` is zero. Fractions are allowed (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}: expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("invalid duration {text:?}: missing unit (e.g. 5s)")),
            u => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {u:?} (use ns, us, ms, s, m, h)"
                ))
            }
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    if !total_ns.is_finite() || total_ns > 1e18 {
        return Err(format!("invalid duration {text:?}: too large"));
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "5", "s", "5x", "-1s", "1e400s", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
