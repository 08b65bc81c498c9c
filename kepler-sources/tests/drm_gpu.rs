//! GPUs through DRM fdinfo and the card's hwmon (issue 19), on fake `/proc` and `/sys` trees
//! in the shapes amdgpu, i915 and xe publish (facts from the kernel's
//! `Documentation/gpu/drm-usage-stats.rst`, `amdgpu_fdinfo.c`, `i915_drm_client.c`,
//! `xe_drm_client.c` and their hwmon files), accounted by the same `GpuAttributor` as NVML,
//! and the scanner once on this machine's real procfs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, ContainerInfo, GpuAttributor, GpuBackend, GpuConfig,
    GpuFrame, GpuSnapshot, MicroWatts, Nanos, NodeCpu, PodInfo, PowerFrame, ProcessInfo,
    ProcessSample, Runtime, Snapshot, Timestamp,
};
use kepler_sources::gpu::{DrmClients, DrmGpu, DrmOptions};
use kepler_sources::{ErrorKind, ProcfsActivity, ProcfsOptions};

const J: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn at(s: u64) -> Timestamp {
    Timestamp(s * S)
}

/// A fake host: `sys/class/drm/...` and `proc/<pid>/{fd,fdinfo}`.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(h.sys().join("class/drm")).unwrap();
        fs::create_dir_all(h.proc()).unwrap();
        h
    }

    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    fn options(&self) -> DrmOptions {
        DrmOptions::new(self.sys(), self.proc())
    }

    /// A host with one card (as [`Host::card`]) and processes 101 to 104.
    fn with_card(
        n: u32,
        driver: &str,
        pci_id: &str,
        slot: &str,
        channel: &str,
        value: u64,
    ) -> Host {
        let host = Host::new();
        host.card(n, driver, pci_id, slot, channel, value);
        for pid in [101, 102, 103, 104] {
            host.process(pid);
        }
        host
    }

    /// A card with its uevent and one hwmon file (`channel` = value), plus the render node
    /// and a connector, which are not cards.
    fn card(&self, n: u32, driver: &str, pci_id: &str, slot: &str, channel: &str, value: u64) {
        let class = self.sys().join("class/drm");
        let dev = self.sys().join("devices/pci0000:00").join(slot);
        fs::create_dir_all(dev.join("hwmon/hwmon4")).unwrap();
        fs::write(
            dev.join("uevent"),
            format!("DRIVER={driver}\nPCI_CLASS=30000\nPCI_ID={pci_id}\nPCI_SLOT_NAME={slot}\nMODALIAS=pci:v0000\n"),
        )
        .unwrap();
        fs::write(dev.join("hwmon/hwmon4/name"), format!("{driver}\n")).unwrap();
        fs::write(
            dev.join(format!("hwmon/hwmon4/{channel}")),
            format!("{value}\n"),
        )
        .unwrap();
        let card = class.join(format!("card{n}"));
        fs::create_dir_all(&card).unwrap();
        symlink(&dev, card.join("device")).unwrap();
        fs::create_dir_all(class.join(format!("card{n}-DP-1"))).unwrap();
        fs::create_dir_all(class.join(format!("renderD{}", 128 + n))).unwrap();
    }

    fn set_hwmon(&self, slot: &str, channel: &str, value: u64) {
        let f = self
            .sys()
            .join("devices/pci0000:00")
            .join(slot)
            .join("hwmon/hwmon4")
            .join(channel);
        fs::write(f, format!("{value}\n")).unwrap();
    }

    /// A process with stdin/out/err and a socket (not DRM).
    fn process(&self, pid: u32) {
        let p = self.proc().join(pid.to_string());
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::create_dir_all(p.join("fdinfo")).unwrap();
        for (fd, target) in [(0, "/dev/null"), (1, "pipe:[4242]"), (2, "socket:[77]")] {
            symlink(target, p.join(format!("fd/{fd}"))).unwrap();
            fs::write(p.join(format!("fdinfo/{fd}")), "pos:\t0\nflags:\t02\n").unwrap();
        }
    }

    /// Opens (or rewrites) DRM descriptor `fd` of `pid` with fdinfo `text`.
    fn drm_fd(&self, pid: u32, fd: u32, text: &str) {
        let p = self.proc().join(pid.to_string());
        let link = p.join(format!("fd/{fd}"));
        if fs::symlink_metadata(&link).is_err() {
            symlink("/dev/dri/renderD128", &link).unwrap();
        }
        fs::write(
            p.join(format!("fdinfo/{fd}")),
            format!("pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t1077\n{text}"),
        )
        .unwrap();
    }

    fn close_fd(&self, pid: u32, fd: u32) {
        let p = self.proc().join(pid.to_string());
        fs::remove_file(p.join(format!("fd/{fd}"))).unwrap();
        fs::remove_file(p.join(format!("fdinfo/{fd}"))).unwrap();
    }
}

/// amdgpu's fdinfo (amdgpu_show_fdinfo): pdev, client id, memory, per-ring-type busy ns.
fn amdgpu(client: u64, gfx_ns: u64, compute_ns: u64) -> String {
    format!(
        "drm-driver:\tamdgpu\ndrm-client-id:\t{client}\ndrm-pdev:\t0000:03:00.0\npasid:\t32770\n\
         drm-memory-vram:\t262144 KiB\ndrm-memory-gtt:\t4096 KiB\ndrm-memory-cpu:\t0 KiB\n\
         amd-memory-visible-vram:\t0 KiB\ndrm-engine-gfx:\t{gfx_ns} ns\n\
         drm-engine-compute:\t{compute_ns} ns\ndrm-engine-dma:\t0 ns\n"
    )
}

/// i915's fdinfo (i915_drm_client_fdinfo): per engine class busy ns, capacity when > 1.
fn i915(client: u64, render_ns: u64, video_ns: u64) -> String {
    format!(
        "drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\ndrm-client-id:\t{client}\n\
         drm-engine-render:\t{render_ns} ns\ndrm-engine-copy:\t0 ns\n\
         drm-engine-video:\t{video_ns} ns\ndrm-engine-capacity-video:\t2\n\
         drm-engine-video-enhance:\t0 ns\n"
    )
}

/// xe's fdinfo (show_run_ticks): busy cycles per engine class and the GPU timestamp.
fn xe(client: u64, rcs_cycles: u64, total_cycles: u64) -> String {
    format!(
        "drm-driver:\txe\ndrm-client-id:\t{client}\ndrm-pdev:\t0000:03:00.0\n\
         drm-total-system:\t0\ndrm-cycles-rcs:\t{rcs_cycles}\n\
         drm-total-cycles-rcs:\t{total_cycles}\ndrm-cycles-bcs:\t0\n\
         drm-total-cycles-bcs:\t{total_cycles}\ndrm-engine-capacity-vcs:\t2\n"
    )
}

fn info(comm: &str, container: Option<(&str, &str)>) -> Arc<ProcessInfo> {
    Arc::new({
        let mut v = ProcessInfo::new(comm, format!("/usr/bin/{comm}"));
        v.container =
            container.map(|(c, pod)| {
                ContainerInfo::new(c, format!("{c}-name"), Runtime::Containerd)
                    .with_pod(PodInfo::new(pod, format!("{pod}-name"), "ml"))
            });
        v
    })
}

/// The CPU snapshot at `t`: pids 101 and 102 in container c1 of pod p1, 103 in c2 of p2,
/// 104 without a container; every process runs (its CPU time grows with `t`).
fn cpu_snapshot(t: Timestamp) -> Snapshot {
    let mut frame = ActivityFrame::new(NodeCpu {
        busy: Nanos(t.0),
        total: Nanos(t.0 * 4),
    });
    frame.processes = vec![
        ProcessSample::new(101, 11, Nanos(t.0 / 4), info("train-a", Some(("c1", "p1")))),
        ProcessSample::new(102, 12, Nanos(t.0 / 4), info("train-b", Some(("c1", "p1")))),
        ProcessSample::new(103, 13, Nanos(t.0 / 4), info("infer", Some(("c2", "p2")))),
        ProcessSample::new(104, 14, Nanos(t.0 / 4), info("shell", None)),
    ];
    Attributor::default().step(&PowerFrame::default(), Some(&frame), t)
}

/// The backend stepped as the runtime steps it: read, account, then observe the snapshot.
struct Rig {
    gpu: DrmGpu,
    engine: GpuAttributor,
    frame: GpuFrame,
}

impl Rig {
    fn new(host: &Host, idle_watts: f64) -> Rig {
        let mut gpu = DrmGpu::open(host.options()).expect("open");
        // The runtime shows the backend the previous tick's snapshot; start with one.
        gpu.observe(&cpu_snapshot(at(0)));
        Rig {
            gpu,
            engine: GpuAttributor::new(
                GpuConfig::builder()
                    .idle_power(Some(MicroWatts::from_watts(idle_watts)))
                    .build(),
            ),
            frame: GpuFrame::default(),
        }
    }

    fn tick(&mut self, s: u64) -> GpuSnapshot {
        self.frame.clear();
        self.gpu.read(at(s), &mut self.frame);
        let cpu = cpu_snapshot(at(s));
        let out = self.engine.step(&self.frame, &cpu, at(s));
        self.gpu.observe(&cpu);
        assert_conserved(&out);
        out
    }
}

fn process_total(s: &GpuSnapshot, pid: u32) -> u64 {
    s.processes
        .iter()
        .filter(|p| p.info.pid == pid)
        .map(|p| p.total.0)
        .sum()
}

/// total = idle + active and active = processes + unattributed, per device, exactly; and
/// containers and pods hold exactly what their processes do.
fn assert_conserved(s: &GpuSnapshot) {
    for (i, d) in s.devices.iter().enumerate() {
        assert_eq!(d.total.0, d.idle.0 + d.active.0, "device {i}");
        let procs: u64 = s
            .processes
            .iter()
            .filter(|p| p.device == i)
            .map(|p| p.total.0)
            .sum();
        assert_eq!(d.active.0, procs + d.unattributed.0, "device {i}");
        let in_containers: u64 = s
            .processes
            .iter()
            .filter(|p| p.device == i && p.info.info.container.is_some())
            .map(|p| p.total.0)
            .sum();
        let containers: u64 = s
            .containers
            .iter()
            .filter(|c| c.device == i)
            .map(|c| c.total.0)
            .sum();
        let pods: u64 = s
            .pods
            .iter()
            .filter(|c| c.device == i)
            .map(|c| c.total.0)
            .sum();
        assert_eq!(containers, in_containers, "device {i}");
        assert_eq!(pods, in_containers, "device {i}");
    }
}

#[test]
fn amdgpu_power_split_by_engine_time_issue_19() {
    let host = Host::with_card(
        0,
        "amdgpu",
        "1002:744C",
        "0000:03:00.0",
        "power1_average",
        110_000_000,
    );
    host.drm_fd(101, 5, &amdgpu(7, 1_000, 0));
    host.drm_fd(102, 5, &amdgpu(8, 5_000, 0));
    let mut rig = Rig::new(&host, 10.0);
    let dev = &rig.gpu.devices()[0];
    assert_eq!(&*dev.vendor, "amd");
    assert_eq!(&*dev.uuid, "0000:03:00.0");
    assert_eq!(&*dev.name, "amdgpu 1002:744C");
    assert_eq!(
        rig.gpu.devices().len(),
        1,
        "connectors and render nodes are no cards"
    );
    rig.tick(1); // baseline of the clients and of the power integration
                 // 1 s: 101 busy 300 ms of gfx + 150 ms of compute, 102 150 ms: 3:1 of 100 J active.
    host.drm_fd(101, 5, &amdgpu(7, 300_001_000, 150_000_000));
    host.drm_fd(102, 5, &amdgpu(8, 150_005_000, 0));
    let s = rig.tick(2);
    let d = &s.devices[0];
    assert_eq!(d.total.0, 110 * J);
    assert_eq!(d.idle.0, 10 * J);
    assert_eq!(process_total(&s, 101), 75 * J);
    assert_eq!(process_total(&s, 102), 25 * J);
    assert_eq!(d.unattributed.0, 0);
    let c1 = s.containers.iter().find(|c| &*c.info.id == "c1").unwrap();
    assert_eq!(c1.total.0, 100 * J);
    // Nothing busy: the active energy stays unattributed, nobody is charged.
    let s = rig.tick(3);
    assert_eq!(process_total(&s, 101), 75 * J);
    assert_eq!(s.devices[0].unattributed.0, 100 * J);
}

#[test]
fn i915_energy_counter_and_a_client_shared_across_fork_issue_19() {
    let host = Host::with_card(
        1,
        "i915",
        "8086:56A0",
        "0000:00:02.0",
        "energy1_input",
        5_000_000_000,
    );
    // Client 9: opened by 103, dup'ed there (fd 6) and inherited by 104 over fork.
    host.drm_fd(103, 5, &i915(9, 0, 0));
    host.drm_fd(103, 6, &i915(9, 0, 0));
    host.drm_fd(104, 5, &i915(9, 0, 0));
    host.drm_fd(101, 7, &i915(10, 0, 0));
    let mut rig = Rig::new(&host, 0.0);
    assert_eq!(&*rig.gpu.devices()[0].vendor, "intel");
    assert_eq!(rig.gpu.devices()[0].index, 1);
    rig.tick(1);
    // 2 s, 61 J: client 9 busy 400 ms render + 200 ms video (counted once, not three
    // times), client 10 busy 150 ms: 61 J * 150/750 to 101, the rest to 103 and 104.
    host.set_hwmon("0000:00:02.0", "energy1_input", 5_061_000_000);
    for (pid, fd) in [(103, 5), (103, 6), (104, 5)] {
        host.drm_fd(pid, fd, &i915(9, 400_000_000, 200_000_000));
    }
    host.drm_fd(101, 7, &i915(10, 150_000_000, 0));
    let s = rig.tick(3);
    assert_eq!(s.devices[0].total.0, 61 * J);
    assert_eq!(process_total(&s, 101), 12_200_000);
    // The fork's two holders share the client equally.
    assert_eq!(process_total(&s, 103), 24_400_000);
    assert_eq!(process_total(&s, 104), 24_400_000);
    assert_eq!(s.devices[0].unattributed.0, 0);
}

#[test]
fn xe_cycles_become_time_and_a_client_closes_mid_tick_issue_19() {
    let host = Host::with_card(0, "xe", "8086:E20B", "0000:03:00.0", "energy1_input", 0);
    host.drm_fd(101, 5, &xe(1, 1_000, 10_000));
    host.drm_fd(103, 5, &xe(2, 0, 10_000));
    let mut rig = Rig::new(&host, 0.0);
    rig.tick(1);
    // GPU timestamp +1,000,000: 101 busy 600,000 cycles, 103 200,000: 3:1 of 40 J.
    host.set_hwmon("0000:03:00.0", "energy1_input", 40 * J);
    host.drm_fd(101, 5, &xe(1, 601_000, 1_010_000));
    host.drm_fd(103, 5, &xe(2, 200_000, 1_010_000));
    let s = rig.tick(2);
    assert_eq!(process_total(&s, 101), 30 * J);
    assert_eq!(process_total(&s, 103), 10 * J);
    // 103 closes its client during the next interval: what it did since the last read is
    // gone with its fdinfo, so 101, still busy, gets the whole device's active energy.
    host.set_hwmon("0000:03:00.0", "energy1_input", 80 * J);
    host.drm_fd(101, 5, &xe(1, 701_000, 2_010_000));
    host.close_fd(103, 5);
    let s = rig.tick(3);
    assert_eq!(process_total(&s, 101), 70 * J);
    assert_eq!(process_total(&s, 103), 10 * J);
    assert_eq!(s.devices[0].unattributed.0, 0);
}

#[test]
fn engine_counters_that_go_back_keep_the_larger_value_issue_19() {
    let host = Host::with_card(
        0,
        "amdgpu",
        "1002:744C",
        "0000:03:00.0",
        "power1_input",
        100_000_000,
    );
    host.drm_fd(101, 5, &amdgpu(7, 1_000_000_000, 0));
    host.drm_fd(102, 5, &amdgpu(8, 0, 0));
    let mut rig = Rig::new(&host, 0.0);
    rig.tick(1);
    // 101's counter dips (the specification allows it): no time, and no wrap to 2^64;
    // 102 worked 100 ms and gets the whole tick.
    host.drm_fd(101, 5, &amdgpu(7, 400_000_000, 0));
    host.drm_fd(102, 5, &amdgpu(8, 100_000_000, 0));
    let s = rig.tick(2);
    assert_eq!(process_total(&s, 101), 0);
    assert_eq!(process_total(&s, 102), 100 * J);
    // It catches up past the kept value: only the part above 1 s counts (100 ms, as 102's).
    host.drm_fd(101, 5, &amdgpu(7, 1_100_000_000, 0));
    host.drm_fd(102, 5, &amdgpu(8, 200_000_000, 0));
    let s = rig.tick(3);
    assert_eq!(process_total(&s, 101), 50 * J);
    assert_eq!(process_total(&s, 102), 150 * J);
}

#[test]
fn a_client_opened_between_reads_counts_from_zero_issue_19() {
    let host = Host::with_card(
        0,
        "amdgpu",
        "1002:744C",
        "0000:03:00.0",
        "power1_input",
        100_000_000,
    );
    host.drm_fd(101, 5, &amdgpu(7, 0, 0));
    let mut rig = Rig::new(&host, 0.0);
    rig.tick(1);
    // 101, read last time, opens a second client and spends 100 ms on it and 100 ms on the
    // first: both count. 102 is first seen with a client: its 900 ms so far are a baseline.
    host.drm_fd(101, 6, &amdgpu(11, 100_000_000, 0));
    host.drm_fd(101, 5, &amdgpu(7, 100_000_000, 0));
    host.drm_fd(102, 5, &amdgpu(12, 900_000_000, 0));
    let s = rig.tick(2);
    assert_eq!(process_total(&s, 101), 100 * J);
    assert_eq!(process_total(&s, 102), 0);
    host.drm_fd(102, 5, &amdgpu(12, 1_100_000_000, 0));
    let s = rig.tick(3);
    assert_eq!(process_total(&s, 102), 100 * J);
}

#[test]
fn only_new_and_running_processes_are_listed_issue_19() {
    let host = Host::new();
    for pid in 1..=100 {
        host.process(pid);
    }
    let mut clients = DrmClients::new(host.proc());
    let procs = |cpu: &dyn Fn(u32) -> u64| {
        (1..=100u32)
            .map(|pid| (pid, 1000 + u64::from(pid), Nanos(cpu(pid))))
            .collect::<Vec<_>>()
    };
    clients.observe(procs(&|_| 0));
    assert!(clients.scan(at(1)).is_empty());
    assert_eq!(clients.stats().listed, 100, "every new process once");
    // Nobody ran: nothing is listed again, however many scans.
    for t in 2..10 {
        clients.observe(procs(&|_| 0));
        clients.scan(at(t));
    }
    assert_eq!(clients.stats().listed, 100);
    // Process 7 opens a DRM device and runs: it is found at the next scan.
    host.drm_fd(7, 9, &amdgpu(3, 5, 0));
    clients.observe(procs(&|pid| if pid == 7 { 10 } else { 0 }));
    let found = clients.scan(at(10));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pids, [7]);
    assert_eq!(clients.stats().listed, 101);
    // A DRM holder is listed every scan; a process that keeps running but holds none is
    // listed after 1, 2, 4 ... scans, not every scan.
    let mut cpu = 0;
    for t in 11..=30 {
        cpu += 1;
        clients.observe(procs(&|pid| if pid == 7 || pid == 8 { cpu } else { 0 }));
        clients.scan(at(t));
    }
    // 20 scans of 7, and 8 at scans 11, 13, 17, 25 (its waits double from its first
    // listing at scan 1: 1, 2, 4, 8, 16 scans).
    assert_eq!(clients.stats().listed, 101 + 20 + 4);
    // A pid reused by a new process (another start time) is listed as new.
    let mut reused = procs(&|_| 0);
    reused[40].1 += 1;
    clients.observe(reused);
    clients.scan(at(31));
    assert_eq!(clients.stats().listed, 125 + 1 + 1, "7 and the new 41");
    // Gone processes are forgotten.
    clients.observe(vec![(7, 1007, Nanos(cpu))]);
    assert_eq!(clients.tracked(), 1);
}

#[test]
fn no_card_with_a_power_channel_is_not_found_issue_19() {
    let host = Host::new();
    let err = DrmGpu::open(host.options()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // A card whose hwmon has only a temperature cannot be metered.
    host.card(
        0,
        "nouveau",
        "10DE:2204",
        "0000:01:00.0",
        "temp1_input",
        40_000,
    );
    let err = DrmGpu::open(host.options()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("power1_average"), "{err}");
}

/// The real path: this machine's processes from the procfs activity source, their
/// descriptors listed through the real `/proc`. Where there is no DRM device (this CI VM has
/// no GPU) no client may be found; the backend itself finds no card to meter.
#[test]
fn the_real_procfs_is_scanned_issue_19() {
    let mut procfs = ProcfsActivity::new(ProcfsOptions::default()).expect("/proc");
    let mut frame = ActivityFrame::default();
    procfs.read(at(1), &mut frame).expect("procfs scan");
    let mut clients = DrmClients::new("/proc");
    clients.observe(
        frame
            .processes
            .iter()
            .map(|p| (p.pid, p.start_time, p.cpu_time)),
    );
    let found = clients.scan(at(1)).to_vec();
    let stats = clients.stats();
    eprintln!(
        "{} processes, {} descriptor directories listed, {} unreadable, {} DRM fdinfo read, clients: {found:?}",
        frame.processes.len(),
        stats.listed,
        stats.unreadable,
        stats.fdinfo_read
    );
    assert!(stats.listed >= 1, "at least this test's own descriptors");
    let has_dri = Path::new("/dev/dri").exists();
    if !has_dri {
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(stats.fdinfo_read, 0);
        let err = DrmGpu::open(DrmOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
}

proptest::proptest! {
    /// fdinfo is outside input: any text of `drm-` lines parses or is refused, never a panic.
    #[test]
    fn any_fdinfo_text_is_parsed_without_panic(text in "(drm-[a-z-]{0,20}:[ \t]{0,2}[0-9a-zA-Z .:-]{0,24}\n){0,12}") {
        let _ = kepler_sources::gpu::DrmFdinfo::parse(&text);
    }
}
