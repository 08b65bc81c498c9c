//! Why eBPF cannot run here, in words a log line can carry: the missing capability or
//! kernel feature. Checked when loading fails, so the fallback to procfs names its cause.

use std::path::Path;

/// `CAP_SYS_ADMIN`: allows everything BPF needs on its own (root has it).
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON`: attaching tracing programs (kernel 5.8+).
const CAP_PERFMON: u32 = 38;
/// `CAP_BPF`: creating maps and loading programs (kernel 5.8+).
const CAP_BPF: u32 = 39;

/// What is missing for the eBPF source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The kernel exposes no BTF (`CONFIG_DEBUG_INFO_BTF`), which CO-RE and `tp_btf` need.
    Btf,
    /// The process lacks these capabilities (and `CAP_SYS_ADMIN`, which would also do).
    Capabilities(Vec<&'static str>),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Btf => f.write_str(
                "kernel BTF is missing (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF=y)",
            ),
            Missing::Capabilities(caps) => write!(
                f,
                "missing capability {} (needs CAP_BPF + CAP_PERFMON, or root)",
                caps.join(" + ")
            ),
        }
    }
}

/// Checks the kernel's BTF at `btf` (normally `/sys/kernel/btf/vmlinux`) and the effective
/// capabilities in `status` (the text of `/proc/self/status`). `None`: nothing known to be
/// missing.
pub fn missing(btf: &Path, status: &str) -> Option<Missing> {
    if !btf.exists() {
        return Some(Missing::Btf);
    }
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return None;
    }
    let lacking: Vec<&'static str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    (!lacking.is_empty()).then_some(Missing::Capabilities(lacking))
}

/// [`missing`] for this process on this kernel.
pub fn missing_here() -> Option<Missing> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    missing(Path::new("/sys/kernel/btf/vmlinux"), &status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(capeff: &str) -> String {
        format!("Name:\tkepler\nCapInh:\t0000000000000000\nCapEff:\t{capeff}\n")
    }

    #[test]
    fn root_and_bpf_plus_perfmon_suffice() {
        let btf = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(missing(btf.path(), &status("000001ffffffffff")), None);
        let bpf_perfmon = (1u64 << 39) | (1u64 << 38);
        assert_eq!(
            missing(btf.path(), &status(&format!("{bpf_perfmon:016x}"))),
            None
        );
    }

    #[test]
    fn names_each_missing_capability() {
        let btf = tempfile::NamedTempFile::new().unwrap();
        let m = missing(btf.path(), &status("0000000000000000")).unwrap();
        assert_eq!(m, Missing::Capabilities(vec!["CAP_BPF", "CAP_PERFMON"]));
        assert!(m.to_string().contains("CAP_BPF + CAP_PERFMON"), "{m}");
        let only_bpf = format!("{:016x}", 1u64 << 39);
        assert_eq!(
            missing(btf.path(), &status(&only_bpf)),
            Some(Missing::Capabilities(vec!["CAP_PERFMON"]))
        );
    }

    #[test]
    fn missing_btf_comes_first() {
        let m = missing(
            Path::new("/nonexistent/btf/vmlinux"),
            &status("000001ffffffffff"),
        );
        assert_eq!(m, Some(Missing::Btf));
        assert!(m.unwrap().to_string().contains("BTF"));
    }
}
