//! The stdout exporter (`--exporter.stdout`, Go Kepler's): a human-readable table per tick,
//! node zones first, then the top workloads of each level by power.

use std::fmt::Write as _;

use kepler_core::{Snapshot, ZoneKind};

use crate::exposition::ExportContext;

/// Rows per workload level.
const TOP: usize = 10;

/// `YYYY-MM-DD HH:MM:SS` UTC of Unix seconds (civil-from-days, proleptic Gregorian).
pub fn utc(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}

/// The last `n` characters of `s`, with `~` in front when cut (paths end with what matters).
fn cut_left(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        s.to_string()
    } else {
        let mut t = String::from("~");
        t.extend(s.chars().skip(len - n + 1));
        t
    }
}

/// The table of one tick.
pub fn render_table(snap: &Snapshot, ctx: &ExportContext) -> String {
    let mut t = String::with_capacity(4096);
    let main = if snap.kinds.contains(&ZoneKind::Package) {
        ZoneKind::Package
    } else {
        snap.kinds.first().copied().unwrap_or(ZoneKind::Package)
    };
    let _ = writeln!(
        t,
        "== kepler  node {}  {} UTC  interval {:.1}s  CPU busy {:.1}%",
        ctx.node_name,
        utc(ctx.wall_offset_secs + snap.at.0 as f64 / 1e9),
        snap.interval.0 as f64 / 1e9,
        snap.usage_ratio * 100.0
    );
    let _ = writeln!(
        t,
        "{:<9} {:<8} {:>9} {:>9} {:>9} {:>13}  PATH",
        "ZONE", "SOURCE", "WATTS", "ACTIVE W", "IDLE W", "JOULES"
    );
    for z in snap.zones.iter().filter(|z| z.has_reading) {
        let _ = writeln!(
            t,
            "{:<9} {:<8} {:>9.2} {:>9.2} {:>9.2} {:>13.1}  {}{}",
            z.info.kind.label(),
            z.info.source.label(),
            z.power,
            z.active_power,
            z.idle_power,
            z.total.0 as f64 / 1e6,
            cut_left(&z.info.path, 36),
            if z.info.estimated { "  (estimate)" } else { "" }
        );
    }
    let w = |e: &kepler_core::Energies| snap.watts(e.last.get(main));
    let j = |e: &kepler_core::Energies| e.total.get(main).0 as f64 / 1e6;

    let mut procs: Vec<_> = snap.processes.iter().collect();
    procs.sort_by(|a, b| w(&b.energy).total_cmp(&w(&a.energy)));
    if ctx.level.process && !procs.is_empty() {
        let _ = writeln!(
            t,
            "-- top processes by {} watts ({} tracked)\n{:>8} {:<16} {:<10} {:<13} {:>9} {:>11} {:>10}",
            main.label(),
            procs.len(),
            "PID", "COMM", "STATE", "CONTAINER", "WATTS", "JOULES", "CPU S"
        );
        for p in procs.iter().take(TOP) {
            let _ = writeln!(
                t,
                "{:>8} {:<16} {:<10} {:<13} {:>9.2} {:>11.1} {:>10.2}",
                p.pid,
                cut(&p.info.comm, 16),
                p.state.label(),
                cut(p.info.container.as_ref().map_or("-", |c| &c.id), 13),
                w(&p.energy),
                j(&p.energy),
                p.cpu_time.0 as f64 / 1e9
            );
        }
    }
    let mut containers: Vec<_> = snap.containers.iter().collect();
    containers.sort_by(|a, b| w(&b.energy).total_cmp(&w(&a.energy)));
    if ctx.level.container && !containers.is_empty() {
        let _ = writeln!(
            t,
            "-- top containers\n{:<13} {:<20} {:<10} {:<10} {:>9} {:>11}",
            "ID", "NAME", "RUNTIME", "STATE", "WATTS", "JOULES"
        );
        for c in containers.iter().take(TOP) {
            let _ = writeln!(
                t,
                "{:<13} {:<20} {:<10} {:<10} {:>9.2} {:>11.1}",
                cut(&c.info.id, 13),
                cut(&c.info.name, 20),
                c.info.runtime.label(),
                c.state.label(),
                w(&c.energy),
                j(&c.energy)
            );
        }
    }
    let mut pods: Vec<_> = snap.pods.iter().collect();
    pods.sort_by(|a, b| w(&b.energy).total_cmp(&w(&a.energy)));
    if ctx.level.pod && !pods.is_empty() {
        let _ = writeln!(
            t,
            "-- top pods\n{:<16} {:<24} {:<10} {:>9} {:>11}",
            "NAMESPACE", "NAME", "STATE", "WATTS", "JOULES"
        );
        for p in pods.iter().take(TOP) {
            let name = if p.info.name.is_empty() {
                &p.info.id
            } else {
                &p.info.name
            };
            let _ = writeln!(
                t,
                "{:<16} {:<24} {:<10} {:>9.2} {:>11.1}",
                cut(&p.info.namespace, 16),
                cut(name, 24),
                p.state.label(),
                w(&p.energy),
                j(&p.energy)
            );
        }
    }
    if ctx.level.vm && !snap.vms.is_empty() {
        let _ = writeln!(
            t,
            "-- virtual machines\n{:<24} {:<10} {:<10} {:>9} {:>11}",
            "NAME", "HYPERVISOR", "STATE", "WATTS", "JOULES"
        );
        for v in snap.vms.iter().take(TOP) {
            let _ = writeln!(
                t,
                "{:<24} {:<10} {:<10} {:>9.2} {:>11.1}",
                cut(&v.info.name, 24),
                v.info.hypervisor,
                v.state.label(),
                w(&v.energy),
                j(&v.energy)
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000.0), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(cut_left("/sys/class/powercap", 9), "~powercap");
        assert_eq!(cut("kworker/u8:2-events", 8), "kworker~");
    }
}
