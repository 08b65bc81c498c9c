//! GPUs of any DRM driver (amdgpu, i915, xe, msm, panfrost, v3d...) without a vendor library:
//! device power from the card's hwmon, per-process engine time from DRM fdinfo.
//!
//! - **Devices**: every `<sysfs>/class/drm/card<N>` whose `device/hwmon/hwmon*/` has an energy
//!   counter (`energy1_input`, then `energy2_input`, µJ: i915, xe) or a power reading
//!   (`power1_input`, then `power1_average`, µW: amdgpu). The device's `uevent` gives its
//!   driver and PCI slot (`PCI_SLOT_NAME`, which fdinfo's `drm-pdev` names) and vendor id.
//!   A card without such a channel cannot be metered and is skipped with a log line.
//! - **Processes**: [`DrmClients`] reads the fdinfo of DRM descriptors (see there for what
//!   is read when). A client maps to the card with its `drm-pdev`, else to the only card of
//!   its driver. Each device's processes carry their engine busy time since the previous read
//!   ([`GpuProcessSample::with_busy_time`]); the accountant in `kepler-core` splits active
//!   energy by it, with the same idle, rounding and roll-up rules as NVML's SM shares. A
//!   client shared by several processes (inherited over `fork`) counts once, its time split
//!   equally among them. Only processes with busy time in the interval are listed, so ticks
//!   where nothing ran teach the learned idle power.

mod clients;
mod fdinfo;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    GpuDevice, GpuFrame, GpuMode, GpuProcessSample, GpuSample, MicroJoules, MicroWatts, Reading,
    Snapshot, SourceKind, State, Timestamp,
};

pub use clients::{ClientUsage, DrmClients, ScanStats};
pub use fdinfo::{DrmFdinfo, EngineCounters};

use super::GpuBackend;
use crate::hwmon::{open_channel, parse_hwmon_label, read_value, READ_BUF};
use crate::{Error, ErrorKind};

/// Where the DRM backend reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrmOptions {
    /// The sysfs root (`/sys`, or the host's).
    pub sysfs: PathBuf,
    /// The procfs root (`/proc`, or the host's).
    pub procfs: PathBuf,
}

impl DrmOptions {
    /// Options over these roots.
    pub fn new(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>) -> DrmOptions {
        DrmOptions {
            sysfs: sysfs.into(),
            procfs: procfs.into(),
        }
    }
}

impl Default for DrmOptions {
    fn default() -> Self {
        DrmOptions::new("/sys", "/proc")
    }
}

/// How a card's hwmon channel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// A cumulative counter in µJ.
    Energy,
    /// Power in µW.
    Power,
}

/// One metered card.
#[derive(Debug)]
struct Card {
    info: Arc<GpuDevice>,
    driver: String,
    pdev: Option<String>,
    channel: Channel,
    file: File,
    path: PathBuf,
}

/// The DRM GPU backend.
#[derive(Debug)]
pub struct DrmGpu {
    cards: Vec<Card>,
    infos: Vec<Arc<GpuDevice>>,
    clients: DrmClients,
    /// Per card, reused: pid -> busy ns.
    per_card: Vec<Vec<(u32, u64)>>,
    unmapped_logged: bool,
}

impl DrmGpu {
    /// Finds the metered cards. [`ErrorKind::NotFound`] when there is none (no DRM device, or
    /// none with a hwmon power or energy channel).
    pub fn open(options: DrmOptions) -> Result<DrmGpu, Error> {
        let class = options.sysfs.join("class/drm");
        let entries = fs::read_dir(&class).map_err(|e| Error::io(&class, &e))?;
        let mut names: Vec<(u32, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix("card")?.parse::<u32>().ok()?;
                Some((n, name))
            })
            .collect();
        names.sort();
        let mut cards = Vec::new();
        let mut skipped = Vec::new();
        for (index, name) in names {
            match open_card(&class.join(&name).join("device"), index) {
                Ok(card) => cards.push(card),
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
        for why in &skipped {
            tracing::info!(card = %why, "DRM card not metered");
        }
        if cards.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Some(&class),
                if skipped.is_empty() {
                    "no DRM card".to_owned()
                } else {
                    format!(
                        "no DRM card with a hwmon power or energy channel ({})",
                        skipped.join("; ")
                    )
                },
            ));
        }
        let infos = cards.iter().map(|c| Arc::clone(&c.info)).collect();
        let per_card = cards.iter().map(|_| Vec::new()).collect();
        Ok(DrmGpu {
            cards,
            infos,
            clients: DrmClients::new(options.procfs),
            per_card,
            unmapped_logged: false,
        })
    }

    /// The client scanner (to feed it processes without a CPU snapshot, and read its stats).
    pub fn clients_mut(&mut self) -> &mut DrmClients {
        &mut self.clients
    }
}

/// The card of a client: by PCI slot, else the only card of its driver.
fn card_of(cards: &[Card], usage: &ClientUsage) -> Option<usize> {
    match &usage.pdev {
        Some(pdev) => cards
            .iter()
            .position(|c| c.pdev.as_deref() == Some(pdev.as_str())),
        None => {
            let mut same = cards
                .iter()
                .enumerate()
                .filter(|(_, c)| c.driver == usage.driver);
            match (same.next(), same.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        }
    }
}

/// Opens the card whose device directory is `device`.
fn open_card(device: &Path, index: u32) -> Result<Card, Error> {
    let uevent_path = device.join("uevent");
    let uevent = fs::read_to_string(&uevent_path).map_err(|e| Error::io(&uevent_path, &e))?;
    let field = |key: &str| {
        uevent
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let driver = field("DRIVER").unwrap_or_default();
    let pdev = field("PCI_SLOT_NAME");
    let vendor_id = field("PCI_ID").and_then(|id| id.split(':').next().map(str::to_lowercase));
    let vendor = match vendor_id.as_deref() {
        Some("1002") => "amd".to_owned(),
        Some("8086") => "intel".to_owned(),
        Some("10de") => "nvidia".to_owned(),
        _ if !driver.is_empty() => driver.clone(),
        _ => "unknown".to_owned(),
    };
    let (channel, path) = find_channel(device)?;
    let file = open_channel(&path)?;
    let name = fs::read(device.join("product_name"))
        .ok()
        .and_then(|b| parse_hwmon_label(&b))
        .unwrap_or_else(|| match field("PCI_ID") {
            Some(id) => format!("{driver} {id}"),
            None => driver.clone(),
        });
    let uuid = pdev.clone().unwrap_or_else(|| format!("card{index}"));
    Ok(Card {
        info: Arc::new(GpuDevice {
            index,
            uuid: uuid.into(),
            name: name.into(),
            vendor: vendor.into(),
            source: SourceKind::Hwmon,
        }),
        driver,
        pdev,
        channel,
        file,
        path,
    })
}

/// The first hwmon channel of the card that meters it, in order of preference.
fn find_channel(device: &Path) -> Result<(Channel, PathBuf), Error> {
    let hwmon = device.join("hwmon");
    let mut chips: Vec<PathBuf> = fs::read_dir(&hwmon)
        .map_err(|e| Error::io(&hwmon, &e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    chips.sort();
    for (file, channel) in [
        ("energy1_input", Channel::Energy),
        ("energy2_input", Channel::Energy),
        ("power1_input", Channel::Power),
        ("power1_average", Channel::Power),
    ] {
        if let Some(path) = chips.iter().map(|c| c.join(file)).find(|p| p.exists()) {
            return Ok((channel, path));
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        Some(&hwmon),
        "no energy1_input, energy2_input, power1_input or power1_average",
    ))
}

impl GpuBackend for DrmGpu {
    fn name(&self) -> &'static str {
        "drm"
    }

    fn devices(&self) -> &[Arc<GpuDevice>] {
        &self.infos
    }

    fn read(&mut self, at: Timestamp, out: &mut GpuFrame) {
        for v in &mut self.per_card {
            v.clear();
        }
        let usage = self.clients.scan(at);
        let mut unmapped = 0usize;
        for u in usage {
            if u.busy_ns == 0 {
                continue;
            }
            let Some(card) = card_of(&self.cards, u) else {
                unmapped += 1;
                continue;
            };
            // One client, several holders after fork: equal parts, the remainder to the first.
            let n = u.pids.len() as u64;
            for (i, &pid) in u.pids.iter().enumerate() {
                let part = u.busy_ns / n + if i == 0 { u.busy_ns % n } else { 0 };
                let list = &mut self.per_card[card];
                match list.iter_mut().find(|(p, _)| *p == pid) {
                    Some((_, b)) => *b += part,
                    None => list.push((pid, part)),
                }
            }
        }
        if unmapped > 0 && !self.unmapped_logged {
            tracing::info!(
                clients = unmapped,
                "DRM clients on devices that are not metered (no matching card); ignored"
            );
            self.unmapped_logged = true;
        }
        let mut buf = [0u8; READ_BUF];
        for (card, procs) in self.cards.iter().zip(&mut self.per_card) {
            let what = card.path.display().to_string();
            let reading = read_value(&card.file, &what, &mut buf).map(|v| match card.channel {
                Channel::Energy => Reading::Energy(MicroJoules(v)),
                Channel::Power => Reading::Power(MicroWatts(v)),
            });
            procs.sort_unstable();
            let processes = procs
                .iter()
                .filter(|(_, b)| *b > 0)
                .map(|&(pid, busy)| GpuProcessSample::with_busy_time(pid, busy))
                .collect();
            out.samples.push(
                GpuSample::new(Arc::clone(&card.info), at, reading, GpuMode::Shared)
                    .with_processes(processes),
            );
        }
    }

    fn observe(&mut self, snapshot: &Snapshot) {
        self.clients.observe(
            snapshot
                .processes
                .iter()
                .filter(|p| p.state == State::Running)
                .map(|p| (p.pid, p.start_time, p.cpu_time)),
        );
    }
}
