//! kepler's own process, for the `process_*` families (`debugCollectors: [process]`): read
//! from this process's `/proc/self` (not `--host.procfs`: that is the host's view).

use kepler_export::ProcessStats;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// CPU time, memory, descriptors and start time of this process; `None` when `/proc/self`
/// cannot be read (then the families are left out).
pub fn read_own_process() -> Option<ProcessStats> {
    read_process("/proc", "self")
}

fn read_process(procfs: &str, pid: &str) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(format!("{procfs}/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may hold spaces: field 3 (state) is index 0.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime) = (num(11)?, num(12)?);
    let start_ticks = num(19)?;
    let vsize = num(20)?;
    let rss_pages = num(21)?;
    let page = 4096u64;
    let boot = std::fs::read_to_string(format!("{procfs}/stat"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })?;
    let open_fds = std::fs::read_dir(format!("{procfs}/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let max_fds = std::fs::read_to_string(format!("{procfs}/{pid}/limits"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        });
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: rss_pages * page,
        virtual_bytes: vsize,
        open_fds,
        max_fds,
        start_time_seconds: boot + start_ticks as f64 / USER_HZ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fake_process_and_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("7/fd")).unwrap();
        for fd in 0..3 {
            std::fs::write(root.join(format!("7/fd/{fd}")), "").unwrap();
        }
        std::fs::write(root.join("stat"), "cpu  1 2 3\nbtime 1700000000\n").unwrap();
        // utime 250, stime 50 ticks; starttime 1000 ticks; vsize; rss 10 pages.
        std::fs::write(
            root.join("7/stat"),
            "7 (my (odd) comm) S 1 7 7 0 -1 0 0 0 0 0 250 50 0 0 20 0 4 0 1000 123456 10 0\n",
        )
        .unwrap();
        std::fs::write(
            root.join("7/limits"),
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n",
        )
        .unwrap();
        let p = read_process(root.to_str().unwrap(), "7").unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 40_960);
        assert_eq!(p.virtual_bytes, 123_456);
        assert_eq!(p.open_fds, 3);
        assert_eq!(p.max_fds, Some(1024));
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        let me = read_own_process().expect("/proc/self");
        assert!(me.resident_bytes > 0 && me.open_fds > 0 && me.start_time_seconds > 1e9);
    }
}
