//! VM energy passthrough (issue 22): the host's kepler hands each virtual machine the energy
//! it attributed to it, and the guest's kepler reads that as its CPU meter.
//!
//! # The tree
//!
//! For each VM the host keeps `<vm.passthrough.dir>/<vm id>/`, laid out like a powercap tree
//! so that it reads like RAPL:
//!
//! ```text
//! <vm id>/idle_policy                          host's attribution.idle (none, cpu-share, equal)
//! <vm id>/estimated                            true when the host's meter is the model
//! <vm id>/intel-rapl:0/{name, max_energy_range_uj, energy_uj}        name: package-0
//! <vm id>/intel-rapl:0/intel-rapl:0:M/{...}                          core, uncore, dram
//! <vm id>/intel-rapl:1/{...}                                         psys
//! ```
//!
//! One zone per CPU zone kind the host has (summed over the host's sockets: the guest sees
//! one socket). Without a package zone every kind is a top-level `intel-rapl:N`. Platform
//! energy is not handed over: the host's engine attributes only CPU zones to workloads, so
//! there is no measured VM share of it to give.
//!
//! `energy_uj` is the VM's cumulative energy (active share plus its idle share under the
//! host's `attribution.idle`) modulo `max_energy_range_uj`, decimal with a trailing newline.
//!
//! # Atomicity
//!
//! Every file is written whole to a temporary name in the same directory and renamed over the
//! old one. A reader opens either the old file or the new one, never a half-written value,
//! on any filesystem and through any sharing transport (9p, virtiofs), because the rename is
//! one operation on the host filesystem and the guest's `open` resolves to one inode.
//! In-place fixed-width writes were the other choice: they rely on a write and a read of the
//! same bytes not interleaving, which Linux does not promise for regular files and which
//! 9p/virtiofs, which may split and cache reads, promise even less. The rename also gives
//! every write a new inode and mtime, which is how a guest tells a live host from a gone one
//! ([`reader`]: staleness).
//!
//! # Identity
//!
//! The directory name is the VM's id as kepler knows it: the `-uuid` of the qemu command
//! line, else its `-name` ([`crate::vm_from_cmdline`]), percent-encoded where it is not
//! `[A-Za-z0-9_.-]` or starts with a dot ([`dir_name`]), so two ids never share a
//! directory and none escapes `vm.passthrough.dir`. A VM that restarts or is renamed with
//! the same uuid finds its directory and continues its counters; a new uuid starts at 0.

mod reader;
mod writer;

pub use reader::{Passthrough, PassthroughOptions};
pub use writer::{PassthroughWriter, PassthroughWriterOptions, WriterStats};

use kepler_core::ZoneKind;

/// The file that holds the host's idle policy, at the top of a VM's tree.
pub const IDLE_POLICY_FILE: &str = "idle_policy";
/// `true` when the host's own CPU meter is an estimate (the model), at the top of a VM's
/// tree: the guest's zones then say `estimated="true"` too.
pub const ESTIMATED_FILE: &str = "estimated";

/// The counter file of a zone.
const ENERGY_FILE: &str = "energy_uj";
/// The range file of a zone.
const RANGE_FILE: &str = "max_energy_range_uj";
/// The name file of a zone.
const NAME_FILE: &str = "name";

/// RAPL's usual `max_energy_range_uj` (a 32-bit counter of 61 µJ units), the default range.
pub const DEFAULT_MAX_ENERGY_RANGE_UJ: u64 = 262_143_328_850;

/// One zone of the tree: its directory relative to the VM's directory (one or two
/// components) and the powercap `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneLayout {
    /// The zone's kind.
    pub kind: ZoneKind,
    /// Path components below the VM's directory, e.g. `["intel-rapl:0", "intel-rapl:0:1"]`.
    pub components: Vec<String>,
    /// The powercap `name`: `package-0`, `core`, `uncore`, `dram`, `psys`.
    pub name: String,
}

/// Where each of the host's CPU zone kinds goes in a VM's tree: the package at
/// `intel-rapl:0` with core, uncore and dram as its sub-zones, psys at the next top-level
/// index; without a package, every kind at the top level. Kinds that are not CPU kinds are
/// left out.
pub fn layout(kinds: &[ZoneKind]) -> Vec<ZoneLayout> {
    let mut kinds: Vec<ZoneKind> = kinds.iter().copied().filter(|k| k.is_cpu()).collect();
    kinds.sort();
    kinds.dedup();
    let has_package = kinds.contains(&ZoneKind::Package);
    let name_of = |k: ZoneKind| match k {
        ZoneKind::Package => "package-0".to_owned(),
        k => k.label().to_owned(),
    };
    let mut out = Vec::with_capacity(kinds.len());
    let (mut top, mut sub) = (0u32, 0u32);
    if has_package {
        out.push(ZoneLayout {
            kind: ZoneKind::Package,
            components: vec!["intel-rapl:0".into()],
            name: name_of(ZoneKind::Package),
        });
        top = 1;
    }
    for k in kinds {
        let under_package =
            has_package && matches!(k, ZoneKind::Core | ZoneKind::Uncore | ZoneKind::Dram);
        if k == ZoneKind::Package {
            continue;
        }
        let components = if under_package {
            let c = vec!["intel-rapl:0".into(), format!("intel-rapl:0:{sub}")];
            sub += 1;
            c
        } else {
            let c = vec![format!("intel-rapl:{top}")];
            top += 1;
            c
        };
        out.push(ZoneLayout {
            kind: k,
            components,
            name: name_of(k),
        });
    }
    out
}

/// The directory name of a VM id: bytes of `[A-Za-z0-9_.-]` as they are, any other byte
/// (and a leading dot, so that `.`, `..` and hidden names cannot occur) as `%XX`. Injective,
/// so distinct ids never share a directory; `None` for an empty id or one whose name would
/// exceed 255 bytes (the usual file-name limit).
pub fn dir_name(id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(id.len());
    for (i, b) in id.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    (out.len() <= 255).then_some(out)
}

/// Parses a value the writer wrote: decimal digits and the trailing newline. A value without
/// the newline is a torn or truncated file and an error, not a smaller number.
fn parse_written(buf: &[u8]) -> Result<u64, String> {
    let Some(body) = buf.strip_suffix(b"\n") else {
        return Err(if buf.is_empty() {
            "empty file".to_owned()
        } else {
            format!(
                "truncated value (no trailing newline): {}",
                crate::sysfs_value::excerpt(buf)
            )
        });
    };
    crate::sysfs_value::parse_decimal(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(l: &ZoneLayout) -> String {
        l.components.join("/")
    }

    #[test]
    fn package_with_subzones_and_psys() {
        let l = layout(&[
            ZoneKind::Dram,
            ZoneKind::Package,
            ZoneKind::Core,
            ZoneKind::Psys,
            ZoneKind::Platform,
        ]);
        let got: Vec<(ZoneKind, String, &str)> = l
            .iter()
            .map(|z| (z.kind, comps(z), z.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (ZoneKind::Package, "intel-rapl:0".into(), "package-0"),
                (ZoneKind::Core, "intel-rapl:0/intel-rapl:0:0".into(), "core"),
                (ZoneKind::Dram, "intel-rapl:0/intel-rapl:0:1".into(), "dram"),
                (ZoneKind::Psys, "intel-rapl:1".into(), "psys"),
            ]
        );
    }

    #[test]
    fn without_package_all_top_level() {
        let l = layout(&[ZoneKind::Core, ZoneKind::Dram]);
        let got: Vec<String> = l.iter().map(comps).collect();
        assert_eq!(got, ["intel-rapl:0", "intel-rapl:1"]);
    }

    #[test]
    fn dir_names_are_safe_and_injective() {
        assert_eq!(
            dir_name("5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b").as_deref(),
            Some("5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b")
        );
        assert_eq!(dir_name("web.01").as_deref(), Some("web.01"));
        assert_eq!(dir_name("..").as_deref(), Some("%2E."));
        assert_eq!(dir_name("a/b").as_deref(), Some("a%2Fb"));
        assert_eq!(dir_name("a%2Fb").as_deref(), Some("a%252Fb"));
        assert_eq!(dir_name(".hidden").as_deref(), Some("%2Ehidden"));
        assert_eq!(dir_name(""), None);
        assert_eq!(dir_name(&"x".repeat(256)), None);
    }

    #[test]
    fn written_values() {
        assert_eq!(parse_written(b"42\n"), Ok(42));
        assert!(parse_written(b"42").unwrap_err().contains("truncated"));
        assert!(parse_written(b"").unwrap_err().contains("empty"));
        assert!(parse_written(b"4x\n")
            .unwrap_err()
            .contains("not a decimal"));
        assert!(parse_written(b"\n").is_err());
    }
}
