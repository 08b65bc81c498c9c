//! `USER_HZ`: the clock tick of every time in `/proc/stat` and `/proc/<pid>/stat`.

use std::path::Path;

use kepler_core::Nanos;

/// The Linux `USER_HZ` on every mainstream architecture; used when it cannot be detected.
pub const DEFAULT_USER_HZ: u64 = 100;
/// `AT_CLKTCK` in the auxiliary vector: the kernel's `USER_HZ`, handed to every process.
const AT_CLKTCK: usize = 17;

/// `USER_HZ` from `<procfs_root>/self/auxv` (`AT_CLKTCK`), else [`DEFAULT_USER_HZ`].
///
/// Reading it through the root keeps fake trees (which have no `self`) on the default, and a
/// host procfs mounted in a container gives the running kernel's value, which is the host's.
/// Used by procfs, the model's callers and kepler-bpf alike, so one process never converts
/// ticks with two different rates.
pub fn user_hz(procfs_root: &Path) -> u64 {
    let Ok(auxv) = std::fs::read(procfs_root.join("self/auxv")) else {
        return DEFAULT_USER_HZ;
    };
    const WORD: usize = std::mem::size_of::<usize>();
    for pair in auxv.chunks_exact(2 * WORD) {
        let (key, val) = pair.split_at(WORD);
        let (Ok(key), Ok(val)) = (<[u8; WORD]>::try_from(key), <[u8; WORD]>::try_from(val)) else {
            break;
        };
        if usize::from_ne_bytes(key) == AT_CLKTCK {
            let hz = usize::from_ne_bytes(val) as u64;
            // A sane USER_HZ; anything else means we misread the vector.
            return if (1..=100_000).contains(&hz) {
                hz
            } else {
                DEFAULT_USER_HZ
            };
        }
    }
    DEFAULT_USER_HZ
}

/// Clock ticks to nanoseconds (saturating; a `user_hz` of 0 is taken as 1).
pub fn ticks_to_ns(user_hz: u64, ticks: u64) -> Nanos {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(user_hz.max(1));
    Nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// A `start_boottime` in nanoseconds since boot to the clock ticks of field 22 of
/// `/proc/<pid>/stat`, computed as the kernel computes it (`nsec_to_clock_t`), so an eBPF
/// source gives a process the same identity (pid, start time) as procfs.
pub fn boottime_ns_to_ticks(user_hz: u64, ns: u64) -> u64 {
    ns / (1_000_000_000 / user_hz.clamp(1, 1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_as_the_kernel_does() {
        assert_eq!(ticks_to_ns(100, 3), Nanos(30_000_000));
        assert_eq!(ticks_to_ns(0, 3), Nanos(3_000_000_000));
        assert_eq!(ticks_to_ns(1, u64::MAX), Nanos(u64::MAX));
        assert_eq!(boottime_ns_to_ticks(100, 5_099_999_999), 509);
        assert_eq!(boottime_ns_to_ticks(250, 8_000_000), 2);
    }

    #[test]
    fn auxv_gives_user_hz_and_a_fake_tree_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(user_hz(dir.path()), DEFAULT_USER_HZ);
        std::fs::create_dir(dir.path().join("self")).unwrap();
        let word = |v: usize| v.to_ne_bytes().to_vec();
        let auxv = [
            word(6),
            word(4096),
            word(AT_CLKTCK),
            word(250),
            word(0),
            word(0),
        ]
        .concat();
        std::fs::write(dir.path().join("self/auxv"), auxv).unwrap();
        assert_eq!(user_hz(dir.path()), 250);
    }
}
