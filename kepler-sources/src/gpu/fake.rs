//! A scripted GPU backend for tests (feature `fakes`): devices with a set power, processes
//! with set SM shares, and switches to make a device vanish or reset its counter.

use std::sync::Arc;

use kepler_core::{
    integrate, GpuDevice, GpuFrame, GpuInstance, GpuMode, GpuProcessSample, GpuSample, MicroJoules,
    MicroWatts, Reading, SourceKind, Timestamp,
};

use super::GpuBackend;

/// One fake device. Tests change its fields between reads.
#[derive(Debug, Clone)]
pub struct FakeGpuDevice {
    /// Identity.
    pub device: Arc<GpuDevice>,
    /// Power drawn from the previous read to the next.
    pub power: MicroWatts,
    /// Sharing mode.
    pub mode: GpuMode,
    /// Processes and their SM shares.
    pub processes: Vec<GpuProcessSample>,
    /// MIG instances.
    pub instances: Vec<GpuInstance>,
    /// False: the device is gone (no sample at all).
    pub present: bool,
    energy: MicroJoules,
    carry: u64,
    last: Option<Timestamp>,
}

impl FakeGpuDevice {
    /// A device `index` drawing `watts`, nothing running, time-sliced.
    pub fn new(index: u32, watts: f64) -> FakeGpuDevice {
        FakeGpuDevice {
            device: Arc::new(GpuDevice {
                index,
                uuid: format!("GPU-fake-{index:04}").into(),
                name: "Fake GPU 80GB".into(),
                vendor: "nvidia".into(),
                source: SourceKind::Fake,
            }),
            power: MicroWatts::from_watts(watts),
            mode: GpuMode::Shared,
            processes: Vec::new(),
            instances: Vec::new(),
            present: true,
            energy: MicroJoules(1_000_000_000),
            carry: 0,
            last: None,
        }
    }

    /// Sets the processes as (pid, SM %) pairs.
    pub fn run(&mut self, procs: &[(u32, u32)]) {
        self.processes = procs
            .iter()
            .map(|&(pid, sm_util)| GpuProcessSample::new(pid, sm_util, None))
            .collect();
    }

    /// The counter drops to 0, as after a driver reload.
    pub fn reset_counter(&mut self) {
        self.energy = MicroJoules::ZERO;
    }
}

/// The fake backend.
#[derive(Debug, Clone, Default)]
pub struct FakeGpu {
    /// Its devices.
    pub devices: Vec<FakeGpuDevice>,
    infos: Vec<Arc<GpuDevice>>,
}

impl FakeGpu {
    /// A backend over `devices`.
    pub fn new(devices: Vec<FakeGpuDevice>) -> FakeGpu {
        let infos = devices.iter().map(|d| Arc::clone(&d.device)).collect();
        FakeGpu { devices, infos }
    }
}

impl GpuBackend for FakeGpu {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn devices(&self) -> &[Arc<GpuDevice>] {
        &self.infos
    }

    fn read(&mut self, at: Timestamp, out: &mut GpuFrame) {
        for d in &mut self.devices {
            // Energy accrues whether or not the device answers.
            if let Some(last) = d.last {
                let (e, carry) = integrate(d.power, at.since(last), d.carry);
                d.energy += e;
                d.carry = carry;
            }
            d.last = Some(at);
            if !d.present {
                continue;
            }
            out.samples.push(
                GpuSample::new(
                    Arc::clone(&d.device),
                    at,
                    Ok(Reading::Energy(d.energy)),
                    d.mode,
                )
                .with_processes(d.processes.clone())
                .with_instances(d.instances.clone()),
            );
        }
    }
}
