//! Fuzzes `vm_from_cmdline`, the QEMU/KVM detector over `/proc/<pid>/cmdline`: any bytes,
//! no panic, and a VM it returns always has an id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(vm) = kepler_sources::vm_from_cmdline(data) {
        assert!(!vm.id.is_empty());
    }
});
