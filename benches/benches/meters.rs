//! Reading 16 hwmon channels per tick (issue 7; budget: 200 µs), and one GPU accounting step
//! with the fake NVML backend.
//!
//! `cargo bench -p kepler-benches --bench meters`
//!
//! The hwmon tree lives in a temp dir (tmpfs or disk): a real sysfs read goes through the
//! driver instead, which on I2C chips can cost far more than the syscall measured here.

use std::fs;
use std::os::unix::fs::symlink;

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_core::{
    Attributor, GpuAttributor, GpuConfig, GpuFrame, PowerFrame, PowerSource, Timestamp,
};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice, GpuBackend};
use kepler_sources::{Hwmon, HwmonOptions, HwmonRole};

/// Four chips with four CPU channels each: two power gauges, an averaged gauge, an energy
/// counter, all with labels.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("class/hwmon")).unwrap();
    for chip in 0..4 {
        let dev = dir.path().join(format!("devices/platform/board.{chip}"));
        let hw = dev.join(format!("hwmon/hwmon{chip}"));
        fs::create_dir_all(&hw).unwrap();
        fs::write(hw.join("name"), "smpro\n").unwrap();
        symlink(&dev, hw.join("device")).unwrap();
        symlink(&hw, dir.path().join(format!("class/hwmon/hwmon{chip}"))).unwrap();
        for ch in 1..=2 {
            fs::write(hw.join(format!("power{ch}_input")), "85000000\n").unwrap();
            fs::write(
                hw.join(format!("power{ch}_label")),
                format!("CPU{ch} power\n"),
            )
            .unwrap();
        }
        fs::write(hw.join("power3_average"), "90000000\n").unwrap();
        fs::write(hw.join("power3_label"), "CPU3 power\n").unwrap();
        fs::write(hw.join("energy1_input"), "123456789012\n").unwrap();
        fs::write(hw.join("energy1_label"), "CPU4 energy\n").unwrap();
    }
    dir
}

fn hwmon(c: &mut Criterion) {
    let dir = tree();
    let mut source = Hwmon::discover(&HwmonOptions::new(dir.path(), HwmonRole::Cpu)).unwrap();
    assert_eq!(source.zones().len(), 16);
    let mut frame = PowerFrame::default();
    let mut t = 0u64;
    c.bench_function("meters/hwmon_read_16_channels", |b| {
        b.iter(|| {
            frame.clear();
            t += 1;
            source.read(Timestamp(t), &mut frame);
            assert!(frame.samples.iter().all(|s| s.reading.is_ok()));
            std::hint::black_box(&frame);
        })
    });
}

fn gpu(c: &mut Criterion) {
    let devices = (0..8)
        .map(|i| {
            let mut d = FakeGpuDevice::new(i, 400.0);
            let procs: Vec<(u32, u32)> = (0..8).map(|p| (1000 + i * 8 + p, 5 + p * 10)).collect();
            d.run(&procs);
            d
        })
        .collect();
    let mut gpu = FakeGpu::new(devices);
    let mut engine = GpuAttributor::new(GpuConfig::default());
    let cpu = Attributor::default().step(&PowerFrame::default(), None, Timestamp(0));
    let mut frame = GpuFrame::default();
    let mut t = 0u64;
    c.bench_function("meters/gpu_step_8_gpus_64_processes", |b| {
        b.iter(|| {
            t += 1_000_000_000;
            frame.clear();
            gpu.read(Timestamp(t), &mut frame);
            std::hint::black_box(engine.step(&frame, &cpu, Timestamp(t)));
        })
    });
}

criterion_group!(benches, hwmon, gpu);
criterion_main!(benches);
