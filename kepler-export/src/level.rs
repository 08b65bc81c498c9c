//! Which metric levels are exported (`--metrics`, `exporter.prometheus.metricsLevel`).

use crate::error::{ErrorKind, ExportError};

/// The metric levels to export. Build-info and self-metrics are always exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MetricsLevel {
    /// `kepler_node_*`: node zones, usage ratio, CPU info, unattributed energy.
    pub node: bool,
    /// `kepler_process_*`.
    pub process: bool,
    /// `kepler_container_*`.
    pub container: bool,
    /// `kepler_vm_*`.
    pub vm: bool,
    /// `kepler_pod_*`.
    pub pod: bool,
}

impl MetricsLevel {
    /// Every level.
    pub const fn all() -> MetricsLevel {
        MetricsLevel {
            node: true,
            process: true,
            container: true,
            vm: true,
            pod: true,
        }
    }

    /// No level (only build-info and self-metrics).
    pub const fn none() -> MetricsLevel {
        MetricsLevel {
            node: false,
            process: false,
            container: false,
            vm: false,
            pod: false,
        }
    }
}

/// Parses a list of level names (`node`, `process`, `container`, `vm`, `pod`, `all`; case
/// does not matter; surrounding spaces are ignored). Each item may itself be a
/// comma-separated list, so both `--metrics=node --metrics=pod` and `--metrics=node,pod` work.
///
/// An empty list gives [`MetricsLevel::none`]. An unknown name is an error naming it and the
/// accepted ones.
pub fn parse_levels(items: &[String]) -> Result<MetricsLevel, ExportError> {
    let mut level = MetricsLevel::none();
    for raw in items.iter().flat_map(|s| s.split(',')) {
        let name = raw.trim();
        if name.eq_ignore_ascii_case("node") {
            level.node = true;
        } else if name.eq_ignore_ascii_case("process") {
            level.process = true;
        } else if name.eq_ignore_ascii_case("container") {
            level.container = true;
        } else if name.eq_ignore_ascii_case("vm") {
            level.vm = true;
        } else if name.eq_ignore_ascii_case("pod") {
            level.pod = true;
        } else if name.eq_ignore_ascii_case("all") {
            level = MetricsLevel::all();
        } else {
            return Err(ExportError::new(
                ErrorKind::UnknownLevel {
                    value: name.to_string(),
                },
                "metrics level",
            ));
        }
    }
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_names_case_insensitively() {
        let l = parse_levels(&strings(&["Node", " POD ", "vm"])).unwrap();
        assert_eq!(
            l,
            MetricsLevel {
                node: true,
                pod: true,
                vm: true,
                ..MetricsLevel::none()
            }
        );
        assert_eq!(
            parse_levels(&strings(&["all"])).unwrap(),
            MetricsLevel::all()
        );
        assert_eq!(
            parse_levels(&strings(&["process,container"])).unwrap(),
            MetricsLevel {
                process: true,
                container: true,
                ..MetricsLevel::none()
            }
        );
        assert_eq!(parse_levels(&[]).unwrap(), MetricsLevel::none());
    }

    #[test]
    fn unknown_level_names_value_and_accepted() {
        let e = parse_levels(&strings(&["node", "gpu"])).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::UnknownLevel {
                value: "gpu".into()
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("\"gpu\""), "{msg}");
        assert!(
            msg.contains("node, process, container, vm, pod, all"),
            "{msg}"
        );
    }
}
