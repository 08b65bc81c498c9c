//! `/proc/cpuinfo`, for the `kepler_node_cpu_info` metric.

use std::path::Path;

use kepler_core::CpuInfo;

use crate::Error;

/// Reads `<procfs_root>/cpuinfo` into one entry per logical CPU.
///
/// Understands the x86 layout (`processor`, `vendor_id`, `model name`, `physical id`,
/// `core id`) and the ARM one (`CPU implementer` as the vendor, `model name` or else
/// `CPU part` as the model); POWER's `cpu` line is used as the model when nothing better
/// is there. Missing fields are left empty or 0, and blocks without a `processor` line
/// (ARM's trailing `Hardware`/`Serial` block) are skipped, so an unusual layout yields
/// fewer details rather than an error. Fails only when the file cannot be read.
pub fn read_cpuinfo(procfs_root: &Path) -> Result<Vec<CpuInfo>, Error> {
    let path = procfs_root.join("cpuinfo");
    let content = std::fs::read(&path).map_err(|e| Error::io(&path, &e))?;
    Ok(parse_cpuinfo(&String::from_utf8_lossy(&content)))
}

#[derive(Default)]
struct Block {
    processor: Option<u32>,
    vendor: Option<String>,
    model: Option<String>,
    part: Option<String>,
    cpu: Option<String>,
    physical_id: u32,
    core_id: u32,
}

impl Block {
    fn finish(self, out: &mut Vec<CpuInfo>) {
        let Some(processor) = self.processor else {
            return;
        };
        out.push(CpuInfo {
            processor,
            vendor_id: self.vendor.unwrap_or_default(),
            model_name: self.model.or(self.part).or(self.cpu).unwrap_or_default(),
            physical_id: self.physical_id,
            core_id: self.core_id,
        });
    }
}

fn parse_cpuinfo(content: &str) -> Vec<CpuInfo> {
    let mut out = Vec::new();
    let mut block = Block::default();
    for line in content.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                std::mem::take(&mut block).finish(&mut out);
            }
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        // Some ARM kernels print every `processor` line first and one shared block of
        // details after; a second `processor` in a block starts a new CPU.
        if key == "processor" && block.processor.is_some() {
            std::mem::take(&mut block).finish(&mut out);
        }
        match key {
            "processor" => block.processor = value.parse().ok(),
            "vendor_id" | "CPU implementer" => block.vendor = Some(value.to_owned()),
            "model name" => block.model = Some(value.to_owned()),
            "CPU part" => block.part = Some(value.to_owned()),
            "cpu" => block.cpu = Some(value.to_owned()),
            "physical id" => block.physical_id = value.parse().unwrap_or(0),
            "core id" => block.core_id = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    block.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_blocks() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nphysical id\t: 1\ncore id\t\t: 3\n\n";
        let cpus = parse_cpuinfo(text);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[1].processor, 1);
        assert_eq!(cpus[1].vendor_id, "GenuineIntel");
        assert_eq!(cpus[1].model_name, "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert_eq!((cpus[1].physical_id, cpus[1].core_id), (1, 3));
    }

    #[test]
    fn arm64_blocks_use_implementer_and_part() {
        let text = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nHardware\t: foo\nSerial\t\t: 0000\n";
        let cpus = parse_cpuinfo(text);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].vendor_id, "0x41");
        assert_eq!(cpus[0].model_name, "0xd0c");
        assert_eq!((cpus[0].physical_id, cpus[0].core_id), (0, 0));
    }

    #[test]
    fn garbage_gives_no_cpus_and_no_panic() {
        assert!(parse_cpuinfo("").is_empty());
        assert!(parse_cpuinfo("::::\n\n:\nprocessor: x\n").is_empty());
    }
}
