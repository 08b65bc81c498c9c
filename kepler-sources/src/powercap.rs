//! The powercap zone directory naming (`intel-rapl:N`, `intel-rapl:N:M`): one rule shared by
//! the RAPL reader and the passthrough tree, which mirrors the RAPL layout for a guest.

/// `intel-rapl:N` -> `(N, None)`, `intel-rapl:N:M` -> `(N, Some(M))`, anything else -> `None`.
pub(crate) fn parse_zone_dir(name: &str) -> Option<(u32, Option<u32>)> {
    let rest = name.strip_prefix("intel-rapl:")?;
    let mut parts = rest.split(':');
    let top = parts.next()?.parse().ok()?;
    let sub = match parts.next() {
        None => None,
        Some(m) => Some(m.parse().ok()?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some((top, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_dir_names() {
        assert_eq!(parse_zone_dir("intel-rapl:0"), Some((0, None)));
        assert_eq!(parse_zone_dir("intel-rapl:1:2"), Some((1, Some(2))));
        assert_eq!(parse_zone_dir("intel-rapl-mmio:0"), None);
        assert_eq!(parse_zone_dir("intel-rapl"), None);
        assert_eq!(parse_zone_dir("intel-rapl:0:1:2"), None);
        assert_eq!(parse_zone_dir("intel-rapl:x"), None);
    }
}
