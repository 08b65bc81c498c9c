//! Issue 14: the eBPF frame builder and the procfs source, reading the same processes of
//! one fake host (procfs, sysfs topology, cgroupfs), give equal frames field by field:
//! samples (identity, CPU time as a total, static data), details (parent, reaped
//! children's time, last CPU), containers' cgroup counters and per-CPU times. Sleepers the
//! program never saw run are reported too, as procfs reports them (one process set for
//! both sources). No privilege needed: the BPF records are built by hand, as the program
//! would write them.

use std::fs;
use std::path::PathBuf;

use kepler_bpf::{FrameBuilder, ProcRecord, Running};
use kepler_core::{ActivityFrame, ActivitySource, Nanos, Timestamp};
use kepler_sources::host::CpuTopology;
use kepler_sources::{ProcfsActivity, ProcfsOptions};

const ID: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";
const TICK: u64 = 10_000_000;

struct Host {
    _dir: tempfile::TempDir,
    proc: PathBuf,
    sys: PathBuf,
}

struct Proc {
    pid: u32,
    ppid: u32,
    comm: &'static str,
    /// utime + stime, cutime + cstime, in ticks.
    ticks: u64,
    children: u64,
    cpu: u32,
    start: u64,
    container: bool,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let sys = dir.path().join("sys");
        fs::create_dir_all(&proc).unwrap();
        for (cpu, socket) in [(0, 0), (1, 1)] {
            let t = sys.join(format!("devices/system/cpu/cpu{cpu}/topology"));
            fs::create_dir_all(&t).unwrap();
            fs::write(t.join("physical_package_id"), format!("{socket}\n")).unwrap();
        }
        let cg = sys.join(format!("fs/cgroup/system.slice/docker-{ID}.scope"));
        fs::create_dir_all(&cg).unwrap();
        let host = Host {
            _dir: dir,
            proc,
            sys,
        };
        host.set_usage(700_000);
        host.set_node(100, 900);
        host
    }

    fn set_usage(&self, usec: u64) {
        let cg = self
            .sys
            .join(format!("fs/cgroup/system.slice/docker-{ID}.scope"));
        fs::write(
            cg.join("cpu.stat"),
            format!("usage_usec {usec}\nuser_usec 1\n"),
        )
        .unwrap();
    }

    fn set_node(&self, busy: u64, idle: u64) {
        fs::write(
            self.proc.join("stat"),
            format!(
                "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {} 0 0 {} 0 0 0 0 0 0\n\
                 cpu1 {} 0 0 {} 0 0 0 0 0 0\nintr 1\n",
                busy / 2,
                idle / 2,
                busy - busy / 2,
                idle - idle / 2
            ),
        )
        .unwrap();
    }

    fn put(&self, p: &Proc) {
        let dir = self.proc.join(p.pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        // Fields 3..39; utime carries all the time, cutime all the children's.
        let mut f = vec!["0".to_string(); 37];
        f[0] = "S".into();
        f[1] = p.ppid.to_string();
        f[11] = p.ticks.to_string(); // 14 utime
        f[13] = p.children.to_string(); // 16 cutime
        f[17] = "1".into(); // 20 num_threads
        f[19] = p.start.to_string(); // 22 starttime
        f[36] = p.cpu.to_string(); // 39 processor
        fs::write(
            dir.join("stat"),
            format!("{} ({}) {}\n", p.pid, p.comm, f.join(" ")),
        )
        .unwrap();
        let cgroup = match p.container {
            true => format!("0::/system.slice/docker-{ID}.scope\n"),
            false => "0::/user.slice\n".to_string(),
        };
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        fs::write(dir.join("cmdline"), format!("{}\0", p.comm)).unwrap();
        let _ = fs::remove_file(dir.join("exe"));
        std::os::unix::fs::symlink(format!("/usr/bin/{}", p.comm), dir.join("exe")).unwrap();
    }

    fn procfs(&self) -> ProcfsActivity {
        ProcfsActivity::new(ProcfsOptions {
            user_hz: Some(100),
            max_open_files: Some(0),
            cgroup_root: Some(self.sys.join("fs/cgroup")),
            sysfs_root: Some(self.sys.clone()),
            ..ProcfsOptions::new(&self.proc)
        })
        .unwrap()
    }

    fn bpf(&self) -> FrameBuilder {
        FrameBuilder::new(&self.proc, 100)
            .with_topology(CpuTopology::read(&self.sys))
            .with_cgroup_root(self.sys.join("fs/cgroup"))
    }
}

/// The slot the program would hold for `p` once it ran `ns` since the attach.
fn record(p: &Proc, slot: u32, ns: u64, last_cpu: u32) -> ProcRecord {
    let mut comm = [0u8; 16];
    comm[..p.comm.len()].copy_from_slice(p.comm.as_bytes());
    ProcRecord {
        slot,
        tgid: p.pid,
        on_cpu_ns: ns,
        start_boottime_ns: p.start * TICK + 3, // within the tick, as the kernel has it
        cgroup_id: 42,
        last_cpu,
        flags: 0,
        comm,
        ppid: p.ppid,
        children_ns: 0,
    }
}

fn no_names(_: u64) -> Option<Vec<u8>> {
    None
}

/// The frame sorted by pid, for comparison.
fn sorted(f: &ActivityFrame) -> ActivityFrame {
    let mut idx: Vec<usize> = (0..f.processes.len()).collect();
    idx.sort_by_key(|&i| f.processes[i].pid);
    let mut out = f.clone();
    out.processes = idx.iter().map(|&i| f.processes[i].clone()).collect();
    out.details = idx.iter().map(|&i| f.details[i]).collect();
    out
}

fn assert_same(procfs: &ActivityFrame, bpf: &ActivityFrame) {
    let (a, b) = (sorted(procfs), sorted(bpf));
    assert_eq!(a.node, b.node, "node");
    assert_eq!(a.cpus, b.cpus, "cpus");
    assert_eq!(a.containers, b.containers, "containers");
    assert_eq!(a.processes.len(), b.processes.len(), "process set");
    for (i, (p, q)) in a.processes.iter().zip(&b.processes).enumerate() {
        assert_eq!(
            (p.pid, p.start_time, p.cpu_time, &p.info),
            (q.pid, q.start_time, q.cpu_time, &q.info),
            "sample of pid {}",
            p.pid
        );
        assert_eq!(a.details[i], b.details[i], "detail of pid {}", p.pid);
    }
}

#[test]
fn bpf_frames_equal_procfs_frames_field_by_field_issue_14() {
    let host = Host::new();
    let mut shell = Proc {
        pid: 100,
        ppid: 1,
        comm: "sh",
        ticks: 250,
        children: 40,
        cpu: 1,
        start: 5_000,
        container: true,
    };
    // A sleeper that never runs while kepler watches, outside any container.
    let sleeper = Proc {
        pid: 200,
        ppid: 1,
        comm: "sleep",
        ticks: 3,
        children: 0,
        cpu: 0,
        start: 6_000,
        container: false,
    };
    host.put(&shell);
    host.put(&sleeper);
    let mut procfs = host.procfs();
    let mut bpf = host.bpf();
    let (mut a, mut b) = (ActivityFrame::default(), ActivityFrame::default());

    // Read 1: the program saw the shell run 20 ms since it attached (its first slice),
    // the sleeper not at all. The shell's 2.5 s before the attach seeds its counter.
    a.clear();
    procfs.read(Timestamp(1), &mut a).unwrap();
    let records = [record(&shell, 7, 20_000_000, 1)];
    b.clear();
    bpf.build(&records, &[], &[], &mut no_names, &mut b)
        .unwrap();
    assert_same(&a, &b);
    assert_eq!(b.cpus.len(), 2, "two sockets: per-CPU times");
    assert_eq!(b.containers[0].usage, Nanos(700_000_000));
    assert_eq!(bpf.dormant(), 1, "the sleeper, from the listing");
    let shell_b = b.processes.iter().find(|p| p.pid == 100).unwrap();
    assert_eq!(
        shell_b.cpu_time,
        Nanos(250 * TICK),
        "a total, not time since attach"
    );

    // Read 2: the shell ran 300 ms more, now on CPU 0, and reaped a child (its cutime
    // grew by the child's 120 ms); the child, started and gone between the reads, is
    // reported by the program only (procfs never lists it) with the shell as parent.
    shell.ticks += 30;
    shell.children += 12;
    shell.cpu = 0;
    host.put(&shell);
    host.set_usage(1_200_000);
    host.set_node(200, 1_000);
    let child = Proc {
        pid: 300,
        ppid: 100,
        comm: "job",
        ticks: 12,
        children: 0,
        cpu: 0,
        start: 5_050,
        container: true,
    };
    let mut gone = record(&child, 9, 120_000_000, 0);
    gone.flags = kepler_bpf::PROC_EXITED;
    a.clear();
    procfs.read(Timestamp(2), &mut a).unwrap();
    let running = [Running {
        tgid: 100,
        ns: 1_000_000,
        cpu: 0,
    }];
    let records = [record(&shell, 7, 319_000_000, 1), gone];
    let names = &mut |id: u64| (id == 42).then(|| format!("docker-{ID}.scope").into_bytes());
    b.clear();
    bpf.build(&records, &[], &running, names, &mut b).unwrap();
    let child_b = b.processes.iter().position(|p| p.pid == 300).unwrap();
    assert_eq!(b.processes[child_b].cpu_time, Nanos(120_000_000));
    assert_eq!(b.details[child_b].ppid, 100);
    assert_eq!(
        b.processes[child_b].info.container.as_ref().map(|c| &*c.id),
        Some(ID),
        "an exited process's container from its cgroup id"
    );
    b.processes.remove(child_b);
    b.details.remove(child_b);
    assert_same(&a, &b);

    // Read 3: the sleeper woke and ran 10 ms: its slot takes over from the listing,
    // seeded with its total.
    let mut woke = sleeper;
    woke.ticks += 1;
    host.put(&woke);
    a.clear();
    procfs.read(Timestamp(3), &mut a).unwrap();
    let records = [
        record(&shell, 7, 319_000_000, 0),
        record(&woke, 11, 10_000_000, 0),
    ];
    b.clear();
    bpf.build(&records, &[], &running, names, &mut b).unwrap();
    assert_eq!(bpf.dormant(), 0);
    assert_same(&a, &b);
}

/// Reading procfs per process costs what eBPF saves; after the first listing, a frame of
/// the builder reads no `<pid>/stat` unless a process is new or its child exited: a
/// sleeper's files may vanish (unreadable) without the frame changing.
#[test]
fn sleepers_are_reported_from_the_first_listing_without_reading_them_again() {
    let host = Host::new();
    let sleeper = Proc {
        pid: 200,
        ppid: 1,
        comm: "sleep",
        ticks: 3,
        children: 0,
        cpu: 0,
        start: 6_000,
        container: false,
    };
    host.put(&sleeper);
    let mut bpf = host.bpf();
    let mut b = ActivityFrame::default();
    bpf.build(&[], &[], &[], &mut no_names, &mut b).unwrap();
    let first = b.processes.clone();
    fs::remove_file(host.proc.join("200/stat")).unwrap();
    b.clear();
    bpf.build(&[], &[], &[], &mut no_names, &mut b).unwrap();
    assert_eq!(b.processes, first);
    // Its directory gone (a zombie reaped without running): dropped at the next sweep.
    fs::remove_dir_all(host.proc.join("200")).unwrap();
    let mut t = 3;
    while bpf.dormant() > 0 {
        assert!(t < 40, "never swept");
        b.clear();
        bpf.build(&[], &[], &[], &mut no_names, &mut b).unwrap();
        t += 1;
    }
    assert!(b.processes.is_empty());
}

/// A sleeper of the first listing that wakes only to exit: its exit record holds just the
/// final slice, and its procfs entry is gone by the read. It goes on from its listed total
/// with the same static data (exe, container), so the engine sees neither a counter going
/// back nor a new set of labels at its exit.
#[test]
fn a_listed_sleeper_that_exits_keeps_its_total_and_static_data_issue_14() {
    let host = Host::new();
    let sleeper = Proc {
        pid: 200,
        ppid: 1,
        comm: "sleep",
        ticks: 30,
        children: 0,
        cpu: 0,
        start: 6_000,
        container: true,
    };
    host.put(&sleeper);
    let mut bpf = host.bpf();
    let mut b = ActivityFrame::default();
    bpf.build(&[], &[], &[], &mut no_names, &mut b).unwrap();
    let listed = b.processes[0].clone();
    assert_eq!(listed.cpu_time, Nanos(30 * TICK));
    fs::remove_dir_all(host.proc.join("200")).unwrap();
    let mut exit = record(&sleeper, 5, 2_000_000, 1);
    exit.flags = kepler_bpf::PROC_EXITED;
    b.clear();
    bpf.build(&[exit], &[], &[], &mut no_names, &mut b).unwrap();
    assert_eq!(b.processes.len(), 1);
    let p = &b.processes[0];
    assert_eq!(p.cpu_time, Nanos(30 * TICK + 2_000_000));
    assert!(
        std::sync::Arc::ptr_eq(&p.info, &listed.info),
        "the same static data"
    );
    assert_eq!(&*p.info.exe, "/usr/bin/sleep");
    assert_eq!(bpf.dormant(), 0);
}
