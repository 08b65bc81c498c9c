//! Virtual machines from a hypervisor process's command line.
//!
//! A QEMU/KVM guest is one host process, so its energy is that process's energy; the
//! command line is where libvirt and other launchers put the guest's identity.

use std::sync::Arc;

use kepler_core::VmInfo;

/// Recognises a QEMU/KVM hypervisor process from its `/proc/<pid>/cmdline` (NUL-separated
/// arguments) and returns the VM it runs.
///
/// A VM when the basename of argv\[0\] is `qemu-system-*`, `qemu-kvm` or `kvm`; the
/// hypervisor label is `kvm` for all of them, as Go Kepler writes it (a QEMU guest on Linux
/// runs on KVM; issue 17). The id is the `-uuid` value, else the guest name; the name is the `-name` value
/// (its `guest=` key in the `guest=foo,debug-threads=on` form libvirt writes, with QEMU's
/// `,,` escape for a literal comma), else the id. A hypervisor with neither `-uuid` nor
/// `-name` has no usable identity and gives `None`, as does every other process.
pub fn vm_from_cmdline(cmdline: &[u8]) -> Option<VmInfo> {
    let mut args = cmdline.split(|&b| b == 0);
    let argv0 = args.next()?;
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    let hypervisor = if (base.starts_with(b"qemu-system-") && base.len() > 12)
        || base == b"qemu-kvm"
        || base == b"kvm"
    {
        "kvm"
    } else {
        return None;
    };

    let mut uuid: Option<String> = None;
    let mut name: Option<String> = None;
    while let Some(arg) = args.next() {
        // QEMU accepts both `-opt` and `--opt`, and `-opt=value` for some; support all three.
        let opt = arg.strip_prefix(b"-").unwrap_or(arg);
        let opt = opt.strip_prefix(b"-").unwrap_or(opt);
        if opt.len() == arg.len() {
            continue;
        }
        let (key, inline) = match opt.iter().position(|&b| b == b'=') {
            Some(eq) => (opt.get(..eq).unwrap_or_default(), opt.get(eq + 1..)),
            None => (opt, None),
        };
        let target = match key {
            b"uuid" => &mut uuid,
            b"name" => &mut name,
            _ => continue,
        };
        let Some(value) = inline.or_else(|| args.next()) else {
            break;
        };
        let value = String::from_utf8_lossy(value);
        let value = if key == b"name" {
            guest_name(&value)
        } else {
            value.trim().to_owned()
        };
        if !value.is_empty() {
            *target = Some(value);
        }
    }

    let id = uuid.or_else(|| name.clone())?;
    let name = name.unwrap_or_else(|| id.clone());
    Some(VmInfo::new(
        Arc::from(id),
        Arc::from(name),
        Arc::from(hypervisor),
    ))
}

/// The guest name from a QEMU `-name` option string: `guest=<name>,...` or `<name>,...`.
fn guest_name(opts: &str) -> String {
    let mut guest = String::new();
    for (i, part) in split_qemu_opts(opts).into_iter().enumerate() {
        match part.split_once('=') {
            Some(("guest", v)) => guest = v.to_owned(),
            // The first, key-less element is the implied `guest`.
            None if i == 0 => guest = part,
            _ => {}
        }
    }
    guest
}

/// Splits a QEMU option string on single commas; `,,` stands for a literal comma.
fn split_qemu_opts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn libvirt_qemu_with_uuid_and_guest_name() {
        let c = cmd(&[
            "/usr/bin/qemu-system-x86_64",
            "-name",
            "guest=web-01,debug-threads=on",
            "-S",
            "-uuid",
            "5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b",
            "-m",
            "2048",
        ]);
        let vm = vm_from_cmdline(&c).expect("vm");
        assert_eq!(&*vm.id, "5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b");
        assert_eq!(&*vm.name, "web-01");
        assert_eq!(&*vm.hypervisor, "kvm");
    }

    #[test]
    fn qemu_kvm_and_kvm_are_kvm() {
        let vm =
            vm_from_cmdline(&cmd(&["/usr/libexec/qemu-kvm", "-name", "db,process=x"])).expect("vm");
        assert_eq!((&*vm.id, &*vm.name, &*vm.hypervisor), ("db", "db", "kvm"));
        let vm = vm_from_cmdline(&cmd(&["kvm", "-uuid", "u-1"])).expect("vm");
        assert_eq!((&*vm.id, &*vm.name, &*vm.hypervisor), ("u-1", "u-1", "kvm"));
    }

    #[test]
    fn inline_and_double_dash_forms() {
        let vm =
            vm_from_cmdline(&cmd(&["qemu-system-aarch64", "--name=a,,b", "-uuid=u2"])).expect("vm");
        assert_eq!((&*vm.id, &*vm.name), ("u2", "a,b"));
    }

    #[test]
    fn qemu_without_identity_is_none() {
        assert_eq!(
            vm_from_cmdline(&cmd(&["qemu-system-x86_64", "-m", "1G"])),
            None
        );
        assert_eq!(
            vm_from_cmdline(&cmd(&["qemu-system-x86_64", "-name"])),
            None
        );
        assert_eq!(
            vm_from_cmdline(&cmd(&["qemu-system-x86_64", "-name", ""])),
            None
        );
    }

    #[test]
    fn other_processes_are_not_vms() {
        for c in [
            cmd(&["/usr/bin/bash", "-name", "x"]),
            cmd(&["qemu-system-", "-name", "x"]),
            cmd(&["/usr/bin/qemu-img", "-name", "x"]),
            cmd(&["/opt/kvm-tools/run", "-name", "x"]),
            Vec::new(),
            vec![0, 0, 0],
        ] {
            assert_eq!(vm_from_cmdline(&c), None, "{c:?}");
        }
    }
}
