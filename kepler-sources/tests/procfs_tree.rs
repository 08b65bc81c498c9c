//! The procfs activity source on fake `/proc` trees built in temp dirs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{ActivityFrame, ActivitySource, Nanos, ProcessSample, Runtime, Timestamp};
use kepler_sources::{ErrorKind, ProcfsActivity, ProcfsOptions};

const ID_A: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";
const ID_B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "8a3d6f2e-1b4c-4d5e-9f0a-7b6c5d4e3f21";
const UID_US: &str = "8a3d6f2e_1b4c_4d5e_9f0a_7b6c5d4e3f21";
/// Descriptor budgets every cache test runs with: reopen each tick, and keep files open.
const BUDGETS: [usize; 2] = [0, 64];
/// 10 ms per tick at USER_HZ 100.
const TICK_NS: u64 = 10_000_000;

/// A fake procfs root.
struct Tree {
    dir: tempfile::TempDir,
}

/// One process of a fake tree.
struct Proc<'a> {
    comm: &'a str,
    ppid: u32,
    flags: u32,
    utime: u64,
    stime: u64,
    starttime: u64,
    cgroup: String,
    cmdline: Vec<u8>,
    exe: Option<&'a str>,
    state: char,
    threads: u32,
}

impl Default for Proc<'_> {
    fn default() -> Self {
        Proc {
            comm: "proc",
            ppid: 1,
            flags: 0x400100,
            utime: 0,
            stime: 0,
            starttime: 1000,
            cgroup: "0::/user.slice/user-1000.slice/session-1.scope\n".into(),
            cmdline: b"/usr/bin/proc\0".to_vec(),
            exe: Some("/usr/bin/proc"),
            state: 'S',
            threads: 1,
        }
    }
}

fn stat_line(pid: u32, p: &Proc<'_>) -> String {
    format!(
        "{pid} ({}) {} {} {pid} {pid} 0 -1 {} 100 0 0 0 {} {} 0 0 20 0 {} 0 {} 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
        p.comm, p.state, p.ppid, p.flags, p.utime, p.stime, p.threads, p.starttime
    )
}

impl Tree {
    fn new() -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        tree.write_node("cpu  1000 200 300 8000 100 10 20 30 400 50");
        // Entries that are not processes.
        fs::create_dir_all(tree.root().join("sys/kernel")).expect("sys");
        fs::create_dir_all(tree.root().join("12abc")).expect("12abc");
        fs::write(tree.root().join("uptime"), "1.0 2.0\n").expect("uptime");
        tree
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_node(&self, cpu_line: &str) {
        let content = format!(
            "{cpu_line}\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345 0 0\nctxt 99\nbtime 1700000000\n"
        );
        fs::write(self.root().join("stat"), content).expect("stat");
    }

    fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root().join(pid.to_string())
    }

    fn add(&self, pid: u32, p: &Proc<'_>) {
        let dir = self.pid_dir(pid);
        fs::create_dir_all(&dir).expect("pid dir");
        fs::write(dir.join("stat"), stat_line(pid, p)).expect("stat");
        fs::write(dir.join("comm"), format!("{}\n", p.comm)).expect("comm");
        fs::write(dir.join("cgroup"), &p.cgroup).expect("cgroup");
        fs::write(dir.join("cmdline"), &p.cmdline).expect("cmdline");
        let _ = fs::remove_file(dir.join("exe"));
        if let Some(exe) = p.exe {
            symlink(exe, dir.join("exe")).expect("exe");
        }
    }

    /// Writes `<pid>/schedstat` (`run_ns wait_ns count`), which a real kernel has for every
    /// process and the other fake-tree tests leave out.
    fn set_schedstat(&self, pid: u32, line: &str) {
        fs::write(self.pid_dir(pid).join("schedstat"), line).expect("schedstat");
    }

    /// A source that keeps up to 64 `stat` files open, as on a real machine.
    fn source(&self) -> ProcfsActivity {
        self.source_with(64)
    }

    /// A source with a descriptor budget: 0 reopens every `stat` on every tick.
    fn source_with(&self, max_open_files: usize) -> ProcfsActivity {
        ProcfsActivity::new(ProcfsOptions {
            root: self.root().to_path_buf(),
            user_hz: Some(100),
            max_open_files: Some(max_open_files),
            // The fake tree's own topology, not this machine's.
            sysfs_root: Some(self.sysfs()),
            ..ProcfsOptions::new(self.root())
        })
        .expect("source")
    }

    /// A sysfs root for the CPU topology, inside the tree (not a pid: never listed).
    fn sysfs(&self) -> std::path::PathBuf {
        self.root().join("fake-sysfs")
    }

    /// Puts logical CPU `cpu` on `socket` in the fake sysfs topology.
    fn set_socket(&self, cpu: u32, socket: u32) {
        let dir = self
            .sysfs()
            .join(format!("devices/system/cpu/cpu{cpu}/topology"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("physical_package_id"), format!("{socket}\n")).unwrap();
    }
}

fn scan(src: &mut ProcfsActivity, t: u64) -> ActivityFrame {
    let mut frame = ActivityFrame::default();
    src.read(Timestamp(t), &mut frame).expect("read");
    frame
}

fn find(frame: &ActivityFrame, pid: u32) -> &ProcessSample {
    frame
        .processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing from {:?}", frame.processes))
}

fn pids(frame: &ActivityFrame) -> Vec<u32> {
    let mut v: Vec<u32> = frame.processes.iter().map(|p| p.pid).collect();
    v.sort_unstable();
    v
}

#[test]
fn node_totals_and_process_cpu_times_are_converted_to_nanoseconds() {
    let tree = Tree::new();
    tree.add(
        1,
        &Proc {
            comm: "systemd",
            ppid: 0,
            utime: 150,
            stime: 50,
            starttime: 1,
            ..Proc::default()
        },
    );
    let mut src = tree.source();
    assert_eq!(src.name(), "procfs");
    assert_eq!(src.user_hz(), 100);
    let frame = scan(&mut src, 42);
    // busy = user + nice + system + irq + softirq + steal; guest fields are inside user/nice.
    let busy = 1000 + 200 + 300 + 10 + 20 + 30;
    assert_eq!(frame.node.busy, Nanos(busy * TICK_NS));
    assert_eq!(frame.node.total, Nanos((busy + 8000 + 100) * TICK_NS));
    let p = find(&frame, 1);
    assert_eq!(p.start_time, 1);
    assert_eq!(p.cpu_time, Nanos(200 * TICK_NS));
    assert_eq!(&*p.info.comm, "systemd");
    assert_eq!(&*p.info.exe, "/usr/bin/proc");
    assert_eq!(p.info.container, None);
    assert_eq!(p.info.vm, None);
}

#[test]
fn only_numeric_directories_are_processes() {
    let tree = Tree::new();
    tree.add(7, &Proc::default());
    tree.add(4_000_000, &Proc::default());
    let frame = scan(&mut tree.source(), 0);
    assert_eq!(pids(&frame), vec![7, 4_000_000]);
}

#[test]
fn container_ids_for_each_runtime_shape() {
    let tree = Tree::new();
    type Want = Option<(&'static str, Runtime, Option<&'static str>)>;
    let cases: Vec<(u32, String, Want)> = vec![
        (
            10,
            format!("0::/system.slice/docker-{ID_A}.scope\n"),
            Some((ID_A, Runtime::Docker, None)),
        ),
        (
            11,
            format!(
                "12:memory:/kubepods/burstable/pod{UID}/{ID_B}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID_B}\n"
            ),
            Some((ID_B, Runtime::Kubernetes, Some(UID))),
        ),
        (
            12,
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID_A}.scope\n"),
            Some((ID_A, Runtime::Containerd, Some(UID))),
        ),
        (
            13,
            format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/crio-{ID_B}.scope/container\n"),
            Some((ID_B, Runtime::CriO, Some(UID))),
        ),
        (
            14,
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID_A}.scope\n"),
            Some((ID_A, Runtime::Podman, None)),
        ),
        (
            15,
            format!("0::/machine.slice/crio-conmon-{ID_A}.scope\n"),
            None,
        ),
        (
            16,
            format!("0::/docker/{ID_B}/docker/{ID_A}\n"),
            Some((ID_A, Runtime::Docker, None)),
        ),
        (17, "0::/init.scope\n".into(), None),
    ];
    for (pid, cgroup, _) in &cases {
        tree.add(
            *pid,
            &Proc {
                cgroup: cgroup.clone(),
                ..Proc::default()
            },
        );
    }
    let frame = scan(&mut tree.source(), 0);
    for (pid, _, want) in &cases {
        let p = find(&frame, *pid);
        let got = p.info.container.as_ref().map(|c| {
            (
                &*c.id,
                c.runtime,
                c.pod.as_ref().map(|pod| &*pod.id),
                &*c.name,
            )
        });
        let want = want.map(|(id, rt, pod)| (id, rt, pod, ""));
        assert_eq!(got, want, "pid {pid}");
        let label = if want.is_some() {
            "container"
        } else {
            "regular"
        };
        assert_eq!(p.info.type_label(), label, "pid {pid}");
    }
}

#[test]
fn qemu_process_is_reported_as_a_vm() {
    let tree = Tree::new();
    tree.add(
        300,
        &Proc {
            comm: "qemu-system-x86",
            cmdline: b"/usr/bin/qemu-system-x86_64\0-name\0guest=web-01,debug-threads=on\0-uuid\0\x35f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b\0-m\0\x32048\0".to_vec(),
            exe: Some("/usr/bin/qemu-system-x86_64"),
            ..Proc::default()
        },
    );
    tree.add(301, &Proc::default());
    let frame = scan(&mut tree.source(), 0);
    let vm = find(&frame, 300).info.vm.clone().expect("vm");
    assert_eq!(&*vm.id, "5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b");
    assert_eq!(&*vm.name, "web-01");
    assert_eq!(&*vm.hypervisor, "kvm");
    assert_eq!(find(&frame, 300).info.type_label(), "vm");
    assert_eq!(find(&frame, 301).info.vm, None);
}

#[test]
fn kernel_threads_are_included_with_an_empty_exe() {
    let tree = Tree::new();
    // kthreadd itself and a worker: PF_KTHREAD set, no exe link, empty cmdline.
    for (pid, ppid, comm) in [(2, 0, "kthreadd"), (90, 2, "kworker/0:1-events")] {
        tree.add(
            pid,
            &Proc {
                comm,
                ppid,
                flags: 0x0020_8040,
                utime: 0,
                stime: 7,
                cmdline: Vec::new(),
                exe: None,
                cgroup: "0::/\n".into(),
                ..Proc::default()
            },
        );
    }
    let frame = scan(&mut tree.source(), 0);
    let worker = find(&frame, 90);
    assert_eq!(&*worker.info.comm, "kworker/0:1-events");
    assert_eq!(&*worker.info.exe, "");
    assert_eq!(worker.cpu_time, Nanos(7 * TICK_NS));
    assert_eq!(&*find(&frame, 2).info.exe, "");
}

#[test]
fn unreadable_exe_link_gives_empty_exe_for_a_user_process() {
    let tree = Tree::new();
    tree.add(
        5,
        &Proc {
            exe: None,
            ..Proc::default()
        },
    );
    let frame = scan(&mut tree.source(), 0);
    assert_eq!(&*find(&frame, 5).info.exe, "");
}

#[test]
fn static_data_is_cached_and_shared_until_pid_reuse() {
    for budget in BUDGETS {
        let tree = Tree::new();
        let p = Proc {
            comm: "nginx",
            utime: 10,
            starttime: 500,
            cgroup: format!("0::/docker/{ID_A}\n"),
            ..Proc::default()
        };
        tree.add(100, &p);
        let mut src = tree.source_with(budget);
        let first = scan(&mut src, 0);
        let info1 = Arc::clone(&find(&first, 100).info);

        // The cgroup and exe change on disk, the CPU time moves on, the identity stays: the
        // cached static data is served, not re-read.
        tree.add(
            100,
            &Proc {
                utime: 25,
                cgroup: format!("0::/docker/{ID_B}\n"),
                exe: Some("/other"),
                ..p
            },
        );
        let second = scan(&mut src, 1);
        let s = find(&second, 100);
        assert!(Arc::ptr_eq(&s.info, &info1), "same Arc on every tick");
        assert_eq!(s.cpu_time, Nanos(25 * TICK_NS));
        assert_eq!(s.info.container.as_ref().map(|c| &*c.id), Some(ID_A));
        assert_eq!(&*s.info.exe, "/usr/bin/proc");

        // PID reuse: same pid, new starttime. A new process, so its files are read again.
        tree.add(
            100,
            &Proc {
                comm: "nginx",
                utime: 1,
                starttime: 900,
                cgroup: format!("0::/docker/{ID_B}\n"),
                exe: Some("/other"),
                ..Proc::default()
            },
        );
        let third = scan(&mut src, 2);
        let t = find(&third, 100);
        assert!(!Arc::ptr_eq(&t.info, &info1));
        assert_eq!(t.start_time, 900);
        assert_eq!(t.info.container.as_ref().map(|c| &*c.id), Some(ID_B));
        assert_eq!(&*t.info.exe, "/other");
        assert_eq!(src.cached(), 1, "the old identity was evicted");
    }
}

#[test]
fn exec_is_detected_by_a_new_comm_and_refreshes_static_data() {
    for budget in BUDGETS {
        let tree = Tree::new();
        let before = Proc {
            comm: "bash",
            exe: Some("/usr/bin/bash"),
            ..Proc::default()
        };
        tree.add(200, &before);
        let mut src = tree.source_with(budget);
        let first = scan(&mut src, 0);
        assert_eq!(&*find(&first, 200).info.exe, "/usr/bin/bash");

        tree.add(
            200,
            &Proc {
                comm: "python3",
                exe: Some("/usr/bin/python3"),
                ..before
            },
        );
        let second = scan(&mut src, 1);
        let p = find(&second, 200);
        assert_eq!(&*p.info.comm, "python3");
        assert_eq!(&*p.info.exe, "/usr/bin/python3");
        assert_eq!(src.cached(), 1);
    }
}

#[test]
fn vanished_pid_leaves_the_frame_and_the_cache() {
    for budget in BUDGETS {
        let tree = Tree::new();
        tree.add(1, &Proc::default());
        tree.add(2000, &Proc::default());
        let mut src = tree.source_with(budget);
        assert_eq!(pids(&scan(&mut src, 0)), vec![1, 2000]);
        assert_eq!(src.cached(), 2);

        fs::remove_dir_all(tree.pid_dir(2000)).expect("rm");
        assert_eq!(pids(&scan(&mut src, 1)), vec![1]);
        assert_eq!(src.cached(), 1);
        assert_eq!(src.skipped(), 0);
    }
}

#[test]
fn pid_directory_without_stat_is_skipped_silently() {
    for budget in BUDGETS {
        // What a process that exits between readdir and open looks like.
        let tree = Tree::new();
        tree.add(1, &Proc::default());
        fs::create_dir_all(tree.pid_dir(3000)).expect("dir");
        let mut src = tree.source_with(budget);
        assert_eq!(pids(&scan(&mut src, 0)), vec![1]);
        assert_eq!(src.vanished(), 1);
        assert_eq!(src.skipped(), 0);
    }
}

#[test]
fn truncated_and_malformed_stat_are_skipped_and_counted() {
    for budget in BUDGETS {
        let tree = Tree::new();
        tree.add(1, &Proc::default());
        tree.add(2, &Proc::default());
        tree.add(3, &Proc::default());
        tree.add(4, &Proc::default());
        let full = stat_line(2, &Proc::default());
        fs::write(tree.pid_dir(2).join("stat"), &full[..40]).expect("cut");
        fs::write(tree.pid_dir(3).join("stat"), "").expect("empty");
        fs::write(tree.pid_dir(4).join("stat"), b"\xff\xfe garbage ) (").expect("garbage");
        let mut src = tree.source_with(budget);
        let frame = scan(&mut src, 0);
        assert_eq!(pids(&frame), vec![1]);
        assert_eq!(src.skipped(), 3);
        // Counted again on the next scan: it is a per-read self-metric.
        scan(&mut src, 1);
        assert_eq!(src.skipped(), 6);
    }
}

#[test]
fn stat_cut_after_starttime_is_accepted() {
    let tree = Tree::new();
    tree.add(8, &Proc::default());
    fs::write(
        tree.pid_dir(8).join("stat"),
        "8 (short) S 1 8 8 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 77\n",
    )
    .expect("stat");
    let frame = scan(&mut tree.source(), 0);
    let p = find(&frame, 8);
    assert_eq!((p.start_time, p.cpu_time), (77, Nanos(7 * TICK_NS)));
}

#[test]
fn comm_with_parentheses_spaces_and_newline_is_sanitized() {
    for budget in BUDGETS {
        let tree = Tree::new();
        tree.add(
            66,
            &Proc {
                comm: "(a) b)\n(c",
                utime: 3,
                starttime: 4242,
                ..Proc::default()
            },
        );
        let mut src = tree.source_with(budget);
        let frame = scan(&mut src, 0);
        let p = find(&frame, 66);
        assert_eq!(&*p.info.comm, "(a) b)?(c");
        assert_eq!(p.start_time, 4242);
        assert_eq!(p.cpu_time, Nanos(3 * TICK_NS));
        // The sanitized comm still matches the raw one on the next tick: no spurious refresh.
        let info = Arc::clone(&p.info);
        let again = scan(&mut src, 1);
        assert!(Arc::ptr_eq(&find(&again, 66).info, &info));
    }
}

#[test]
fn read_appends_and_leaves_clearing_to_the_caller() {
    let tree = Tree::new();
    tree.add(1, &Proc::default());
    let mut src = tree.source();
    let mut frame = ActivityFrame::default();
    for t in 0..3 {
        frame.clear();
        src.read(Timestamp(t), &mut frame).expect("read");
    }
    assert_eq!(frame.processes.len(), 1, "a cleared frame holds one read");

    // The buffer rule: a source appends, so what the caller (or a wrapper) put first stays.
    let info = Arc::new(kepler_core::ProcessInfo::new("x", ""));
    let sentinel = ProcessSample::new(u32::MAX, 7, Nanos(42), info);
    frame.clear();
    frame.processes.push(sentinel.clone());
    frame.details.push(kepler_core::ProcessDetail::default());
    src.read(Timestamp(3), &mut frame).expect("read");
    assert_eq!(frame.processes[0], sentinel, "the sentinel is kept, first");
    assert_eq!(frame.processes.len(), 2);
    assert_eq!(frame.details.len(), 2, "details stay one per process");
    assert_eq!(frame.processes[1].pid, 1);
}

#[test]
fn new_fails_with_not_found_naming_the_stat_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = ProcfsActivity::new(ProcfsOptions::new(dir.path())).expect_err("no stat");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.path(), Some(dir.path().join("stat").as_path()));
}

#[test]
fn new_rejects_a_stat_without_cpu_line_and_a_zero_user_hz() {
    let tree = Tree::new();
    fs::write(tree.root().join("stat"), "intr 1 2 3\n").expect("stat");
    let err = ProcfsActivity::new(ProcfsOptions::new(tree.root())).expect_err("parse");
    assert_eq!(err.kind(), ErrorKind::Parse);

    let tree = Tree::new();
    let err = ProcfsActivity::new(ProcfsOptions {
        user_hz: Some(0),
        ..ProcfsOptions::new(tree.root())
    })
    .expect_err("zero hz");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn stat_vanishing_after_start_fails_the_read_not_the_process() {
    let tree = Tree::new();
    let mut src = tree.source();
    fs::remove_file(tree.root().join("stat")).expect("rm");
    let mut frame = ActivityFrame::default();
    assert!(src.read(Timestamp(0), &mut frame).is_err());
}

#[test]
fn fake_tree_without_auxv_uses_user_hz_100() {
    let tree = Tree::new();
    let src = ProcfsActivity::new(ProcfsOptions::new(tree.root())).expect("source");
    assert_eq!(src.user_hz(), 100);
}

/// The real `/proc` of the machine running the tests: this test process must be in it,
/// with its own comm and a non-zero start time.
#[test]
fn real_proc_lists_this_process() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc here");
        return;
    }
    let mut src = ProcfsActivity::new(ProcfsOptions::default()).expect("real /proc");
    let frame = scan(&mut src, 0);
    let me = find(&frame, std::process::id());
    assert!(me.start_time > 0);
    assert!(!me.info.exe.is_empty());
    assert!(frame.node.total >= frame.node.busy);
    assert!(frame.node.busy > Nanos(0));
}

/// A warm scan of many fake processes. Run with
/// `cargo test --release -p kepler-sources --test procfs_tree -- --ignored --nocapture`.
/// A fake tree on disk costs differently from procfs (no per-read stat generation in the
/// kernel, but a real filesystem lookup), so this is a regression guard, not the number.
#[test]
#[ignore = "timing; run explicitly"]
fn warm_scan_of_10k_fake_processes() {
    let tree = Tree::new();
    let n = 10_000u32;
    for pid in 1..=n {
        let dir = tree.pid_dir(pid);
        fs::create_dir(&dir).expect("dir");
        let p = Proc {
            utime: u64::from(pid),
            ..Proc::default()
        };
        fs::write(dir.join("stat"), stat_line(pid, &p)).expect("stat");
        fs::write(dir.join("cgroup"), &p.cgroup).expect("cgroup");
    }
    let mut src = tree.source_with(0);
    let mut frame = ActivityFrame::default();
    let cold = std::time::Instant::now();
    src.read(Timestamp(0), &mut frame).expect("read");
    let cold = cold.elapsed();
    assert_eq!(frame.processes.len(), n as usize);
    let rounds = 10;
    let warm = std::time::Instant::now();
    for t in 1..=rounds {
        frame.clear();
        src.read(Timestamp(t), &mut frame).expect("read");
    }
    let warm = warm.elapsed() / rounds as u32;
    eprintln!("fake tree, {n} processes: cold scan {cold:?}, warm scan {warm:?}");
}

/// A warm scan of the real `/proc`, reporting the time per process, with every `stat`
/// reopened on each tick and with the automatic descriptor budget. Run like the one above.
#[test]
#[ignore = "timing; run explicitly"]
fn warm_scan_of_real_proc() {
    for max_open_files in [Some(0), None] {
        let mut src = ProcfsActivity::new(ProcfsOptions {
            max_open_files,
            ..ProcfsOptions::default()
        })
        .expect("real /proc");
        let mut frame = ActivityFrame::default();
        src.read(Timestamp(0), &mut frame).expect("read");
        let rounds = 20u32;
        let start = std::time::Instant::now();
        for t in 1..=rounds {
            frame.clear();
            src.read(Timestamp(u64::from(t)), &mut frame).expect("read");
        }
        let per_scan = start.elapsed() / rounds;
        let n = frame.processes.len().max(1);
        eprintln!(
            "real /proc, {n} processes, {} kept open: warm scan {per_scan:?}, {:?} per process",
            src.open_files(),
            per_scan / n as u32
        );
    }
}

#[test]
fn kept_stat_files_stay_within_budget_and_close_with_their_process() {
    let tree = Tree::new();
    for pid in [1, 2, 3] {
        tree.add(
            pid,
            &Proc {
                utime: u64::from(pid),
                ..Proc::default()
            },
        );
    }
    let mut src = tree.source_with(2);
    scan(&mut src, 0);
    assert_eq!(src.open_files(), 2);
    // Kept files are re-read from the start: new content shows on the next tick.
    for pid in [1, 2, 3] {
        tree.add(
            pid,
            &Proc {
                utime: 100 + u64::from(pid),
                ..Proc::default()
            },
        );
    }
    let frame = scan(&mut src, 1);
    for pid in [1, 2, 3] {
        assert_eq!(
            find(&frame, pid).cpu_time,
            Nanos((100 + u64::from(pid)) * TICK_NS)
        );
    }
    assert_eq!(src.open_files(), 2);
    for pid in [1, 2, 3] {
        fs::remove_dir_all(tree.pid_dir(pid)).expect("rm");
    }
    assert!(scan(&mut src, 2).processes.is_empty());
    assert_eq!((src.open_files(), src.cached()), (0, 0));
}

#[test]
fn kept_stat_files_on_real_proc_see_time_advance() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc here");
        return;
    }
    let mut src = ProcfsActivity::new(ProcfsOptions {
        max_open_files: Some(100_000),
        ..ProcfsOptions::default()
    })
    .expect("real /proc");
    let me = std::process::id();
    let before = find(&scan(&mut src, 0), me).cpu_time;
    assert!(src.open_files() > 0);
    // Burn some CPU so the kept descriptor has something new to report.
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(60) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    let after = find(&scan(&mut src, 1), me).cpu_time;
    assert!(after > before, "{after:?} > {before:?}");
}

/// Issue 4: parent pid, reaped children's time (`cutime + cstime`) and last CPU reach the
/// frame, one detail per process in the same order.
#[test]
fn details_carry_ppid_children_time_and_last_cpu_issue_4() {
    let tree = Tree::new();
    tree.add(
        40,
        &Proc {
            ppid: 7,
            utime: 5,
            stime: 1,
            ..Proc::default()
        },
    );
    // Patch cutime = 30, cstime = 12 ticks into the stat line.
    let line = stat_line(
        40,
        &Proc {
            ppid: 7,
            utime: 5,
            stime: 1,
            ..Proc::default()
        },
    )
    .replacen(" 5 1 0 0 20 ", " 5 1 30 12 20 ", 1);
    fs::write(tree.pid_dir(40).join("stat"), line).unwrap();
    tree.add(41, &Proc::default());
    let mut src = tree.source();
    let frame = scan(&mut src, 1);
    assert_eq!(frame.details.len(), frame.processes.len());
    let i = frame.processes.iter().position(|p| p.pid == 40).unwrap();
    assert_eq!(frame.details[i].ppid, 7);
    assert_eq!(frame.details[i].children_time, Nanos(42 * TICK_NS));
    assert_eq!(frame.details[i].last_cpu, Some(1));
}

/// Issue 4: a container's cgroup CPU counter (v2 `cpu.stat` under a hybrid `unified`
/// mount) is read each scan; when the cgroup vanishes mid-run it is dropped, not misread.
#[test]
fn container_cgroup_usage_is_read_and_dropped_when_gone_issue_4() {
    let tree = Tree::new();
    let cgroot = tempfile::tempdir().unwrap();
    let cgdir = cgroot
        .path()
        .join(format!("unified/system.slice/docker-{ID_A}.scope"));
    fs::create_dir_all(&cgdir).unwrap();
    fs::write(cgdir.join("cpu.stat"), "usage_usec 250000\nuser_usec 1\n").unwrap();
    tree.add(
        50,
        &Proc {
            cgroup: format!("0::/system.slice/docker-{ID_A}.scope\n"),
            ..Proc::default()
        },
    );
    let mut src = ProcfsActivity::new(ProcfsOptions {
        user_hz: Some(100),
        cgroup_root: Some(cgroot.path().to_path_buf()),
        ..ProcfsOptions::new(tree.root())
    })
    .unwrap();
    let frame = scan(&mut src, 1);
    assert_eq!(frame.containers.len(), 1);
    assert_eq!(&*frame.containers[0].info.id, ID_A);
    assert_eq!(frame.containers[0].usage, Nanos(250_000_000));
    fs::write(cgdir.join("cpu.stat"), "usage_usec 900000\n").unwrap();
    assert_eq!(scan(&mut src, 2).containers[0].usage, Nanos(900_000_000));
    // A removed cgroup's kept file fails to read (ENODEV on cgroupfs); on a fake tree the
    // nearest thing is a file that reads empty mid-run.
    fs::write(cgdir.join("cpu.stat"), "").unwrap();
    assert!(scan(&mut src, 3).containers.is_empty());
    assert_eq!(src.accounted_containers(), 0);
}

/// Issue 4: on a two-socket machine the per-CPU lines of `stat` come with their socket;
/// on one socket they are not read at all. Issue 14: the sockets come from the sysfs
/// topology (the one map the model reads too), and a malformed per-CPU line is skipped
/// while the others still count (the one rule of the host layer).
#[test]
fn per_cpu_times_with_sockets_on_two_socket_machines_issue_4() {
    let tree = Tree::new();
    let mut src = tree.source();
    assert!(
        scan(&mut src, 1).cpus.is_empty(),
        "no topology: no per-CPU split"
    );
    // cpuinfo is not where sockets come from.
    fs::write(
        tree.root().join("cpuinfo"),
        "processor\t: 0\nphysical id\t: 0\n\nprocessor\t: 1\nphysical id\t: 1\n\n",
    )
    .unwrap();
    assert!(
        scan(&mut tree.source(), 1).cpus.is_empty(),
        "cpuinfo ignored"
    );
    tree.set_socket(0, 0);
    tree.set_socket(1, 1);
    tree.set_socket(2, 1);
    fs::write(
        tree.root().join("stat"),
        "cpu  3 0 0 7 0 0 0 0 0 0\ncpu0 1 0 0 4 0 0 0 0 0 0\ncpu1 2 0 0 3 0 0 0 0 0 0\n\
         cpu2 2 x 0 3\nintr 1\n",
    )
    .unwrap();
    let mut src = tree.source();
    let frame = scan(&mut src, 1);
    let got: Vec<(u32, u32, u64, u64)> = frame
        .cpus
        .iter()
        .map(|c| (c.cpu, c.socket, c.time.busy.0, c.time.total.0))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, TICK_NS, 5 * TICK_NS),
            (1, 1, 2 * TICK_NS, 5 * TICK_NS)
        ]
    );
    assert_eq!(frame.node.busy, Nanos(3 * TICK_NS));
}

/// Hundreds of kept descriptors re-read across scans (times moving, a process gone, a new
/// one) give exactly the frames of a source that reopens every file.
#[test]
fn many_kept_descriptors_give_the_same_frames_as_reopening() {
    let tree = Tree::new();
    for pid in 100..800u32 {
        tree.add(
            pid,
            &Proc {
                utime: u64::from(pid),
                ..Proc::default()
            },
        );
    }
    let mut kept = tree.source_with(4096);
    let mut reopen = tree.source_with(0);
    let sorted = |mut f: ActivityFrame| {
        let mut rows: Vec<_> = f
            .processes
            .drain(..)
            .zip(f.details.drain(..))
            .map(|(p, d)| (p.pid, p.start_time, p.cpu_time, d))
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    };
    assert_eq!(sorted(scan(&mut kept, 1)), sorted(scan(&mut reopen, 1)));
    assert!(kept.open_files() >= 700);
    // Times move, one process goes away, one is new.
    for pid in (100..800u32).step_by(7) {
        tree.add(
            pid,
            &Proc {
                utime: u64::from(pid) + 50,
                ..Proc::default()
            },
        );
    }
    fs::remove_dir_all(tree.pid_dir(101)).unwrap();
    tree.add(900, &Proc::default());
    let a = sorted(scan(&mut kept, 2));
    assert_eq!(a, sorted(scan(&mut reopen, 2)));
    let p107 = a.iter().find(|r| r.0 == 107).unwrap();
    assert_eq!(p107.2, Nanos((107 + 50) * TICK_NS));
}

/// (pid, start time, cpu time, detail) of every process, sorted by pid.
fn rows(frame: &ActivityFrame) -> Vec<(u32, u64, Nanos, kepler_core::ProcessDetail)> {
    let mut rows: Vec<_> = frame
        .processes
        .iter()
        .zip(&frame.details)
        .map(|(p, d)| (p.pid, p.start_time, p.cpu_time, *d))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

fn ppid_of(frame: &ActivityFrame, pid: u32) -> u32 {
    let i = frame
        .processes
        .iter()
        .position(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing"));
    frame.details[i].ppid
}

/// Scans until the probes of a tree whose processes are quiet have their baselines: the
/// first read, the read that finds `stat` unchanged, and the probe that sets the baseline.
fn settle(src: &mut ProcfsActivity) -> ActivityFrame {
    scan(src, 1);
    scan(src, 2);
    scan(src, 3)
}

/// Issue 3: a quiet single-threaded process is read through its `schedstat`. Once its
/// `stat` has read the same twice and a probe has set the baseline, an unmoved `schedstat`
/// skips the `stat` read and repeats the sample; a moved one reads `stat` again.
#[test]
fn idle_process_is_read_through_schedstat_issue_3() {
    for budget in BUDGETS {
        let tree = Tree::new();
        let p = Proc {
            utime: 7,
            ..Proc::default()
        };
        tree.add(10, &p);
        tree.set_schedstat(10, "70000000 5 3\n");
        // Its parent, init: a skipped process's parent must be alive (see below).
        tree.add(
            1,
            &Proc {
                ppid: 0,
                ..Proc::default()
            },
        );
        let mut src = tree.source_with(budget);
        let first = settle(&mut src);
        assert_eq!(src.quiet_skips(), 0, "budget {budget}");
        tree.set_schedstat(1, "1000 0 1\n");
        for t in 4..7 {
            assert_eq!(rows(&scan(&mut src, t)), rows(&first), "budget {budget}");
        }
        if budget == 0 {
            // Without kept descriptors a probe costs as much as the read it would save.
            assert_eq!(src.quiet_skips(), 0);
            continue;
        }
        // Init had no schedstat at first: it reads `stat` every tick.
        assert_eq!(src.quiet_skips(), 3);
        // The skip is real: a change to `stat` alone (which a kernel never makes without
        // moving `schedstat`) is not seen...
        tree.add(10, &Proc { utime: 8, ..p });
        assert_eq!(find(&scan(&mut src, 7), 10).cpu_time, Nanos(7 * TICK_NS));
        // ...until the process runs: `schedstat` moves and `stat` is read again.
        tree.set_schedstat(10, "80000000 9 4\n");
        assert_eq!(find(&scan(&mut src, 8), 10).cpu_time, Nanos(8 * TICK_NS));
        assert_eq!(src.quiet_skips(), 4);
    }
}

/// Issue 3: `schedstat` counts the main thread only, so a process with more threads is
/// read through `stat` every tick; so is every process of a kernel that prints `0 0 0`.
#[test]
fn multi_threaded_and_zero_schedstat_processes_always_read_stat_issue_3() {
    let tree = Tree::new();
    tree.add(
        20,
        &Proc {
            threads: 3,
            ..Proc::default()
        },
    );
    tree.set_schedstat(20, "5000000 1 2\n");
    tree.add(21, &Proc::default());
    tree.set_schedstat(21, "0 0 0\n");
    let mut src = tree.source();
    settle(&mut src);
    scan(&mut src, 4);
    assert_eq!(src.quiet_skips(), 0);
    // Another thread of 20 ran; 21 ran: both are seen at once.
    for pid in [20, 21] {
        tree.add(
            pid,
            &Proc {
                utime: 3,
                threads: if pid == 20 { 3 } else { 1 },
                ..Proc::default()
            },
        );
    }
    let frame = scan(&mut src, 5);
    assert_eq!(find(&frame, 20).cpu_time, Nanos(3 * TICK_NS));
    assert_eq!(find(&frame, 21).cpu_time, Nanos(3 * TICK_NS));
    assert_eq!(src.quiet_skips(), 0);
}

/// Issue 3: children are re-parented when their parent exits, without running, so an idle
/// child's `schedstat` does not move. A skipped child whose parent is gone, or became a
/// zombie, is read again in the same scan and shows its new parent.
#[test]
fn skipped_child_of_an_exited_parent_shows_its_new_parent_issue_3() {
    let tree = Tree::new();
    let init = Proc {
        ppid: 0,
        ..Proc::default()
    };
    tree.add(1, &init);
    for (parent, child) in [(30, 31), (40, 41)] {
        tree.add(parent, &Proc::default());
        tree.add(
            child,
            &Proc {
                ppid: parent,
                ..Proc::default()
            },
        );
    }
    for pid in [1, 30, 31, 40, 41] {
        tree.set_schedstat(pid, &format!("{pid}000 0 1\n"));
    }
    let mut src = tree.source();
    settle(&mut src);
    let frame = scan(&mut src, 4);
    assert_eq!(src.quiet_skips(), 5);
    assert_eq!((ppid_of(&frame, 31), ppid_of(&frame, 41)), (30, 40));

    // 30 exits and is reaped; 40 exits and stays a zombie (it ran: its schedstat moved).
    fs::remove_dir_all(tree.pid_dir(30)).unwrap();
    tree.add(
        40,
        &Proc {
            state: 'Z',
            ..Proc::default()
        },
    );
    tree.set_schedstat(40, "41000 0 2\n");
    for child in [31, 41] {
        tree.add(child, &Proc::default()); // ppid 1
    }
    let frame = scan(&mut src, 5);
    assert_eq!((ppid_of(&frame, 31), ppid_of(&frame, 41)), (1, 1));
    assert_eq!(frame.processes.len(), frame.details.len());
    assert_eq!(pids(&frame), vec![1, 31, 40, 41]);
}

/// Issue 3: a quiet process keeps its probe rather than its `stat` when the descriptor
/// budget is full, and a busy one the other way round; the budget is never exceeded.
#[test]
fn probes_share_the_descriptor_budget_issue_3() {
    let tree = Tree::new();
    // Parent 0: started from outside this pid namespace, as a container's init is.
    let orphan = Proc {
        ppid: 0,
        ..Proc::default()
    };
    for pid in [50, 51] {
        tree.add(pid, &orphan);
        tree.set_schedstat(pid, "1000 0 1\n");
    }
    let mut src = tree.source_with(2);
    settle(&mut src);
    assert_eq!(src.open_files(), 2);
    scan(&mut src, 4);
    assert_eq!(
        src.quiet_skips(),
        2,
        "both probes kept within a budget of 2"
    );
    assert_eq!(src.open_files(), 2);
    // 50 gets busy: it reads `stat` every tick again, and the budget still holds.
    for t in 5..9 {
        tree.add(
            50,
            &Proc {
                utime: t,
                ppid: 0,
                ..Proc::default()
            },
        );
        tree.set_schedstat(50, &format!("{t}0000000 0 {t}\n"));
        assert_eq!(find(&scan(&mut src, t), 50).cpu_time, Nanos(t * TICK_NS));
        assert!(src.open_files() <= 2);
    }
    fs::remove_dir_all(tree.pid_dir(50)).unwrap();
    fs::remove_dir_all(tree.pid_dir(51)).unwrap();
    scan(&mut src, 9);
    assert_eq!((src.open_files(), src.cached()), (0, 0));
}

/// A source on the real `/proc` (`None` when this machine has none), with or without
/// probes.
fn real_source(probe_idle: bool) -> Option<ProcfsActivity> {
    if !Path::new("/proc/self/schedstat").exists() {
        eprintln!("skipped: no /proc/<pid>/schedstat here");
        return None;
    }
    let src = ProcfsActivity::new(ProcfsOptions {
        max_open_files: Some(4096),
        probe_idle,
        ..ProcfsOptions::default()
    })
    .expect("real /proc");
    Some(src)
}

/// Children killed and reaped on drop.
struct Kids(Vec<std::process::Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sh(script: &str) -> std::process::Child {
    std::process::Command::new("sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh")
}

fn line_of(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    line.trim().to_string()
}

fn rows_of(
    frame: &ActivityFrame,
    pids: &[u32],
) -> Vec<(u32, u64, Nanos, kepler_core::ProcessDetail)> {
    rows(frame)
        .into_iter()
        .filter(|r| pids.contains(&r.0))
        .collect()
}

/// Issue 3, real kernel: sleeping processes are skipped through their `schedstat` and
/// give exactly what reading their `stat` gives; one that wakes and runs is read again on
/// the next scan.
#[test]
fn probed_scan_of_real_proc_matches_a_full_scan_issue_3() {
    let (Some(mut probed), Some(mut full)) = (real_source(true), real_source(false)) else {
        return;
    };
    let mut kids = Kids(Vec::new());
    for _ in 0..20 {
        kids.0.push(sh("exec sleep 600"));
    }
    // Blocks on stdin, burns some CPU when a line arrives, says so and blocks again.
    kids.0.push(sh(
        "read x; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo burnt; read y",
    ));
    let pids: Vec<u32> = kids.0.iter().map(|c| c.id()).collect();
    let worker = *pids.last().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    settle(&mut probed);
    let before = probed.quiet_skips();
    let a = scan(&mut probed, 4);
    let b = scan(&mut full, 4);
    assert!(
        probed.quiet_skips() - before >= pids.len() as u64,
        "every sleeper skipped: {} of {}",
        probed.quiet_skips() - before,
        pids.len()
    );
    assert_eq!(rows_of(&a, &pids), rows_of(&b, &pids));

    use std::io::Write;
    let child = kids.0.last_mut().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(line_of(child), "burnt");
    // Let it reach its second `read` and block: until then it may still run, and move to
    // another CPU between the two scans (their `last_cpu` would differ).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t0 = find(&a, worker).cpu_time;
    let a = scan(&mut probed, 5);
    let b = scan(&mut full, 5);
    assert!(
        find(&a, worker).cpu_time > t0,
        "the woken worker's time moved"
    );
    assert_eq!(rows_of(&a, &pids), rows_of(&b, &pids));
}

/// Issue 3, real kernel: when a parent exits its idle child is re-parented without
/// running; the probed scan still reports the new parent, as `stat` does.
#[test]
fn probed_scan_of_real_proc_sees_reparenting_issue_3() {
    let Some(mut src) = real_source(true) else {
        return;
    };
    // The parent prints its child's pid, then becomes `sleep` itself.
    let mut parent = sh("sleep 600 & echo $!; exec sleep 600");
    let child: u32 = line_of(&mut parent).parse().expect("child pid");
    let _child = scopeguard_kill(child);
    std::thread::sleep(std::time::Duration::from_millis(200));
    settle(&mut src);
    let frame = scan(&mut src, 4);
    assert_eq!(ppid_of(&frame, child), parent.id());
    let skips = src.quiet_skips();
    let _ = parent.kill();
    let _ = parent.wait();
    let frame = scan(&mut src, 5);
    let stat = fs::read(format!("/proc/{child}/stat")).expect("child still lives");
    let now = kepler_sources::parse_stat(&stat).expect("stat").ppid;
    assert_ne!(now, parent.id());
    assert_eq!(ppid_of(&frame, child), now);
    assert!(
        skips > 0,
        "the child was being skipped before its parent exited"
    );
}

/// Kills `pid` (not our child: `kill(1)` rather than `Child::kill`) when dropped.
fn scopeguard_kill(pid: u32) -> impl Drop {
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
    Guard(pid)
}

/// Issue 9, real kernel: after the first scan only the pids created since the previous scan
/// are listed; a process started between two scans is found, one that exits is dropped,
/// and a process alive throughout is in every scan.
#[test]
fn incremental_listing_of_real_proc_finds_new_and_drops_exited_processes_issue_9() {
    let Some(mut src) = real_source(true) else {
        return;
    };
    let mut old = Kids(vec![sh("exec sleep 600")]);
    let old_pid = old.0[0].id();
    assert!(scan(&mut src, 1).processes.iter().any(|p| p.pid == old_pid));
    let mut kid = sh("exec sleep 600");
    let pid = kid.id();
    let frame = scan(&mut src, 2);
    assert_eq!(
        src.incremental_listings(),
        1,
        "the second scan lists only new pids"
    );
    assert!(
        frame.processes.iter().any(|p| p.pid == pid),
        "new process found"
    );
    assert!(frame.processes.iter().any(|p| p.pid == old_pid));
    let _ = kid.kill();
    let _ = kid.wait();
    let frame = scan(&mut src, 3);
    assert!(
        !frame.processes.iter().any(|p| p.pid == pid),
        "exited process dropped"
    );
    assert!(frame.processes.iter().any(|p| p.pid == old_pid));
    assert_eq!(src.incremental_listings(), 2);
    old.0.clear();
}

/// Issue 3: an exec (new comm) of a process that kept only its probe, at a full budget,
/// does not keep a fresh `stat` beside it over the budget (kernel workers rename
/// themselves often, and take this path).
#[test]
fn exec_of_a_probed_process_at_a_full_budget_stays_within_it_issue_3() {
    let tree = Tree::new();
    let orphan = |comm| Proc {
        ppid: 0,
        comm,
        ..Proc::default()
    };
    for pid in [70, 71] {
        tree.add(pid, &orphan("worker"));
        tree.set_schedstat(pid, "1000 0 1\n");
    }
    let mut src = tree.source_with(2);
    settle(&mut src);
    scan(&mut src, 4);
    assert_eq!((src.quiet_skips(), src.open_files()), (2, 2));
    tree.add(70, &orphan("worker-renamed"));
    tree.set_schedstat(70, "2000 0 2\n");
    let frame = scan(&mut src, 5);
    assert_eq!(&*find(&frame, 70).info.comm, "worker-renamed");
    assert!(src.open_files() <= 2, "{} kept", src.open_files());
}
