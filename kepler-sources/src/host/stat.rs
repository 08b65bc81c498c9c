//! Parsers for `/proc/<pid>/stat`, `/proc/<pid>/schedstat` and `/proc/stat`.
//!
//! Hand-written rather than through the `procfs` crate: the scan reads one `stat` per live
//! process per tick, and parsing the handful of fields we need straight from the bytes, with
//! the comm borrowed from the read buffer, keeps the warm path free of allocation.

use std::borrow::Cow;

use kepler_core::{CpuTime, NodeCpu};

use super::{ticks_to_ns, CpuTopology};

/// `PF_KTHREAD` from the kernel's `include/linux/sched.h`: the task is a kernel thread.
pub(crate) const PF_KTHREAD: u32 = 0x0020_0000;

/// The fields of `/proc/<pid>/stat` that kepler uses, numbered as in proc(5).
///
/// Public so that tools embedding `kepler-sources` (and the fuzz targets) can parse a stat
/// line the same way the procfs activity source does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatFields {
    /// (1) Process id.
    pub pid: u32,
    /// (2) Command name, between the first `(` and the last `)`, sanitized to one printable
    /// line (control characters become `?`, invalid UTF-8 becomes U+FFFD).
    pub comm: String,
    /// (3) State character (`R`, `S`, `D`, `Z`, ...).
    pub state: u8,
    /// (4) Parent process id.
    pub ppid: u32,
    /// (9) Kernel `PF_*` flags; `PF_KTHREAD` (0x200000) marks a kernel thread.
    pub flags: u32,
    /// (14) User-mode CPU time in clock ticks (includes guest time).
    pub utime: u64,
    /// (15) Kernel-mode CPU time in clock ticks.
    pub stime: u64,
    /// (16) Waited-for children's user time in ticks; negative values are clamped to 0.
    pub cutime: u64,
    /// (17) Waited-for children's kernel time in ticks; negative values are clamped to 0.
    pub cstime: u64,
    /// (20) Number of threads in the process.
    pub num_threads: u32,
    /// (22) Start time after boot in clock ticks: with the pid, the process identity.
    pub starttime: u64,
    /// (39) CPU last run on; 0 when the line is too short to carry it.
    pub processor: u32,
}

/// The same fields with the comm borrowed from the input: what the hot scan loop uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawStat<'a> {
    pub pid: u32,
    pub comm: &'a [u8],
    pub state: u8,
    pub ppid: u32,
    pub flags: u32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    pub num_threads: u32,
    pub starttime: u64,
    pub processor: u32,
}

/// Parses the content of a `/proc/<pid>/stat` file.
///
/// Returns `None` for anything malformed: no `(`/`)` pair, a non-numeric field, or a line
/// that stops before field 22 (`starttime`). A line that stops between fields 22 and 39 is
/// accepted with `processor` 0. Never panics, whatever the input.
pub fn parse_stat(buf: &[u8]) -> Option<StatFields> {
    let raw = parse_stat_raw(buf)?;
    Some(StatFields {
        pid: raw.pid,
        comm: sanitize_comm(raw.comm).into_owned(),
        state: raw.state,
        ppid: raw.ppid,
        flags: raw.flags,
        utime: raw.utime,
        stime: raw.stime,
        cutime: raw.cutime,
        cstime: raw.cstime,
        num_threads: raw.num_threads,
        starttime: raw.starttime,
        processor: raw.processor,
    })
}

/// Allocation-free parse of a stat line; see [`parse_stat`].
pub(crate) fn parse_stat_raw(buf: &[u8]) -> Option<RawStat<'_>> {
    // The comm may itself contain '(' , ')' , spaces and newlines, so it runs from the
    // first '(' to the LAST ')'.
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = parse_u32(trim_ascii(buf.get(..open)?))?;
    let comm = buf.get(open + 1..close)?;
    let rest = buf.get(close + 1..)?;
    // After the comm: " S ppid ...\n". Exactly one space, then single-space separated fields.
    let rest = rest.strip_prefix(b" ")?;
    let rest = trim_end_newline(rest);

    let mut raw = RawStat {
        pid,
        comm,
        state: 0,
        ppid: 0,
        flags: 0,
        utime: 0,
        stime: 0,
        cutime: 0,
        cstime: 0,
        num_threads: 0,
        starttime: 0,
        processor: 0,
    };
    let mut last = 2u32;
    for (field, tok) in (3u32..).zip(rest.split(|&b| b == b' ')) {
        match field {
            3 => match tok {
                [s] if s.is_ascii_graphic() => raw.state = *s,
                _ => return None,
            },
            4 => raw.ppid = parse_u32(tok)?,
            9 => raw.flags = parse_u32(tok)?,
            14 => raw.utime = parse_u64(tok)?,
            15 => raw.stime = parse_u64(tok)?,
            16 => raw.cutime = parse_i64_clamped(tok)?,
            17 => raw.cstime = parse_i64_clamped(tok)?,
            20 => raw.num_threads = parse_u32(tok)?,
            22 => raw.starttime = parse_u64(tok)?,
            39 => {
                raw.processor = parse_u32(tok)?;
                last = field;
                break;
            }
            // Fields we do not use must still be present (empty means a double space or a
            // cut line), but their content is not checked.
            _ if tok.is_empty() => return None,
            _ => {}
        }
        last = field;
    }
    if last < 22 {
        return None;
    }
    Some(raw)
}

/// Parses `/proc/<pid>/schedstat` (`run_ns wait_ns run_count`): the main thread's time on
/// a CPU in nanoseconds, as the scheduler counts it, and how many times it was put on one.
/// `None` for anything else.
pub fn parse_schedstat(buf: &[u8]) -> Option<(u64, u64)> {
    let mut fields = trim_end_newline(buf).split(|&b| b == b' ');
    let run_ns = parse_u64(fields.next()?)?;
    parse_u64(fields.next()?)?;
    let count = parse_u64(fields.next()?)?;
    fields.next().is_none().then_some((run_ns, count))
}

/// Node CPU time in clock ticks from `/proc/stat`'s aggregate `cpu ` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeTicks {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

impl NodeTicks {
    /// These ticks as CPU time, at `user_hz` ticks per second.
    pub fn to_cpu_time(self, user_hz: u64) -> NodeCpu {
        NodeCpu {
            busy: ticks_to_ns(user_hz, self.busy),
            total: ticks_to_ns(user_hz, self.total),
        }
    }
}

/// Appends to `out` the CPU time of every per-CPU line of the `/proc/stat` text `buf` whose
/// CPU has a known socket in `topology`: what the per-socket split needs, for the procfs
/// and eBPF sources alike. Malformed lines are skipped ([`parse_per_cpu`]'s one rule).
pub fn push_cpu_times(buf: &[u8], topology: &CpuTopology, user_hz: u64, out: &mut Vec<CpuTime>) {
    parse_per_cpu(buf, |cpu, ticks| {
        if let Some(socket) = topology.socket_of(cpu) {
            out.push(CpuTime::new(cpu, socket, ticks.to_cpu_time(user_hz)));
        }
    });
}

/// Parses the first line of `/proc/stat` (`cpu  user nice system idle iowait irq softirq
/// steal guest guest_nice`). Fields after `idle` are optional (old kernels); guest and
/// guest_nice are already counted in user and nice, so they are not added again.
pub fn parse_node_cpu(buf: &[u8]) -> Option<NodeTicks> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let rest = line.strip_prefix(b"cpu ")?;
    parse_cpu_fields(rest)
}

/// Calls `each(cpu, ticks)` for every per-CPU line (`cpuN ...`) of `/proc/stat`, and
/// returns how many per-CPU lines were malformed.
///
/// The one rule for a bad line, whoever reads: it is skipped, and the others are still used
/// (one bad line must not hide the others, style rule 7). A line is malformed when a field
/// is not a number, it has fewer than four fields, or the CPU number is at least
/// [`MAX_CPUS`](super::topology::MAX_CPUS). Lines that are not per-CPU lines (the aggregate
/// `cpu ` line, `intr`, ...) are neither used nor counted.
pub fn parse_per_cpu(buf: &[u8], mut each: impl FnMut(u32, NodeTicks)) -> usize {
    let mut bad = 0;
    for line in buf.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"cpu") else {
            continue;
        };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            continue;
        }
        let (num, fields) = rest.split_at(digits);
        let cpu = parse_u32(num).filter(|&c| (c as usize) < super::topology::MAX_CPUS);
        match (cpu, parse_cpu_fields(fields)) {
            (Some(cpu), Some(ticks)) => each(cpu, ticks),
            _ => bad += 1,
        }
    }
    bad
}

fn parse_cpu_fields(rest: &[u8]) -> Option<NodeTicks> {
    let mut vals = [0u64; 8];
    let mut n = 0usize;
    for tok in rest
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
    {
        if let Some(slot) = vals.get_mut(n) {
            *slot = parse_u64(trim_ascii(tok))?;
        }
        n += 1;
    }
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = vals;
    let busy = user
        .saturating_add(nice)
        .saturating_add(system)
        .saturating_add(irq)
        .saturating_add(softirq)
        .saturating_add(steal);
    let total = busy.saturating_add(idle).saturating_add(iowait);
    Some(NodeTicks { busy, total })
}

/// The comm as one printable line: control characters become `?` (as `ps` shows them),
/// invalid UTF-8 becomes U+FFFD. Borrows when nothing needs replacing. Controls are matched
/// after decoding, so the C1 ones (U+0080..U+009F, two bytes in UTF-8) are caught too; the
/// `proc_stat` fuzz target found `\xc2\x83` passing through (issue 14).
pub fn sanitize_comm(raw: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(raw);
    if !text.chars().any(char::is_control) {
        return text;
    }
    Cow::Owned(
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

/// Whether `raw`, sanitized, equals `cached`, without allocating in the common case.
pub(crate) fn comm_matches(raw: &[u8], cached: &str) -> bool {
    if raw.len() == cached.len() && !raw.iter().any(|&b| is_control(b)) && raw.is_ascii() {
        return raw == cached.as_bytes();
    }
    sanitize_comm(raw) == cached
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

fn trim_end_newline(b: &[u8]) -> &[u8] {
    let mut b = b;
    while let [head @ .., b'\n' | b'\r' | b' ' | b'\0'] = b {
        b = head;
    }
    b
}

/// Decimal digits only, no sign, no overflow.
pub(crate) fn parse_u64(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in tok {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// Like [`parse_u64`], bounded to `u32`.
pub(crate) fn parse_u32(tok: &[u8]) -> Option<u32> {
    u32::try_from(parse_u64(tok)?).ok()
}

/// A signed decimal, negative values clamped to 0 (cutime/cstime are `long` in the kernel).
fn parse_i64_clamped(tok: &[u8]) -> Option<u64> {
    match tok.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits).map(|_| 0),
        None => parse_u64(tok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEMD: &[u8] = b"1 (systemd) S 0 1 1 0 -1 4194560 123 456 7 8 150 250 -3 4 20 0 1 0 12 170000000 3000 18446744073709551615 1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_a_full_stat_line() {
        let s = parse_stat(SYSTEMD).expect("valid");
        assert_eq!(s.pid, 1);
        assert_eq!(s.comm, "systemd");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 0);
        assert_eq!(s.flags, 4194560);
        assert_eq!((s.utime, s.stime), (150, 250));
        assert_eq!((s.cutime, s.cstime), (0, 4));
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime, 12);
        assert_eq!(s.processor, 1);
    }

    #[test]
    fn schedstat_gives_run_time_and_count() {
        assert_eq!(
            parse_schedstat(b"608305199 1234 57\n"),
            Some((608_305_199, 57))
        );
        assert_eq!(parse_schedstat(b"0 0 0\n"), Some((0, 0)));
        assert_eq!(parse_schedstat(b"1 2\n"), None);
        assert_eq!(parse_schedstat(b"1 2 3 4\n"), None);
        assert_eq!(parse_schedstat(b"1 x 3\n"), None);
        assert_eq!(parse_schedstat(b""), None);
    }

    #[test]
    fn comm_runs_from_first_open_to_last_close_paren() {
        let line = b"42 ((a) b)\n(c) R 1 0 0 0 0 0 0 0 0 0 5 6 0 0 0 0 1 0 99\n";
        let s = parse_stat(line).expect("valid");
        assert_eq!(s.comm, "(a) b)?(c");
        assert_eq!(s.state, b'R');
        assert_eq!(s.starttime, 99);
        assert_eq!(s.processor, 0);
    }

    #[test]
    fn line_cut_before_starttime_is_rejected() {
        let line = b"42 (x) R 1 0 0 0 0 0 0 0 0 0 5 6 0 0 0 0 1 0";
        assert!(parse_stat(line).is_none());
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"42 (x").is_none());
        assert!(parse_stat(b"42 )x( R").is_none());
    }

    #[test]
    fn garbage_fields_are_rejected() {
        let line = b"42 (x) R 1 0 0 0 0 0 0 0 0 0 5a 6 0 0 0 0 1 0 99\n";
        assert!(parse_stat(line).is_none());
        let double_space = b"42 (x) R 1 0 0 0 0  0 0 0 0 5 6 0 0 0 0 1 0 99\n";
        assert!(parse_stat(double_space).is_none());
        let overflow = b"42 (x) R 1 0 0 0 0 0 0 0 0 0 99999999999999999999999 6 0 0 0 0 1 0 99";
        assert!(parse_stat(overflow).is_none());
        let no_pid = b"(x) R 1 0 0 0 0 0 0 0 0 0 5 6 0 0 0 0 1 0 99";
        assert!(parse_stat(no_pid).is_none());
    }

    #[test]
    fn node_cpu_sums_busy_without_guest() {
        let buf = b"cpu  100 20 30 1000 50 5 6 7 40 2\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        let t = parse_node_cpu(buf).expect("valid");
        assert_eq!(t.busy, 100 + 20 + 30 + 5 + 6 + 7);
        assert_eq!(t.total, t.busy + 1000 + 50);
        let old = parse_node_cpu(b"cpu 1 2 3 4\n").expect("four fields suffice");
        assert_eq!((old.busy, old.total), (6, 10));
        assert!(parse_node_cpu(b"cpu 1 2 3\n").is_none());
        assert!(parse_node_cpu(b"cpu0 1 2 3 4\n").is_none());
        assert!(parse_node_cpu(b"intr 1 2 3 4\n").is_none());
    }

    #[test]
    fn per_cpu_lines_skip_and_count_the_bad_ones() {
        let buf = b"cpu  9 9 9 9\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 x 3 4\ncpu2 1 2\n\
cpu3 10 0 0 30\ncpu99999999 1 2 3 4\ncpuX 1 2 3 4\nintr 1 2\n";
        let mut seen = Vec::new();
        let bad = parse_per_cpu(buf, |cpu, t| seen.push((cpu, t.busy, t.total)));
        assert_eq!(seen, vec![(0, 27, 36), (3, 10, 40)]);
        assert_eq!(bad, 3);
    }

    #[test]
    fn comm_matching_agrees_with_sanitizing() {
        assert!(comm_matches(b"bash", "bash"));
        assert!(!comm_matches(b"bash", "bas"));
        assert!(comm_matches(b"a\nb", "a?b"));
        assert!(comm_matches("é".as_bytes(), "é"));
        assert!(comm_matches(b"\xff", "\u{fffd}"));
    }
}
