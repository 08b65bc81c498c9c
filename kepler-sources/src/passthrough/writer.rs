//! The host side: each VM's attributed energy written into its tree every tick.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{MicroJoules, Snapshot, ZoneKind};

use super::{
    dir_name, layout, parse_written, DEFAULT_MAX_ENERGY_RANGE_UJ, ENERGY_FILE, ESTIMATED_FILE,
    IDLE_POLICY_FILE, NAME_FILE, RANGE_FILE,
};
use crate::{Error, ErrorKind};

/// Files and directories are world-readable: the process that shares the tree into the guest
/// (virtiofsd, QEMU's 9p server) often runs as its own user.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Where and how the host writes (`vm.passthrough.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughWriterOptions {
    /// `vm.passthrough.dir`: one subdirectory per VM is kept here.
    pub dir: PathBuf,
    /// The counters wrap to 0 at this value (`max_energy_range_uj`).
    pub max_energy_range: MicroJoules,
}

impl PassthroughWriterOptions {
    /// Trees under `dir` with RAPL's usual range.
    pub fn new(dir: impl Into<PathBuf>) -> PassthroughWriterOptions {
        PassthroughWriterOptions {
            dir: dir.into(),
            max_energy_range: MicroJoules(DEFAULT_MAX_ENERGY_RANGE_UJ),
        }
    }
}

/// What the writer did since it started, for logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Files replaced (every `energy_uj`, every tick, plus the static files once per VM).
    pub files_written: u64,
    /// Bytes written into those files.
    pub bytes_written: u64,
    /// Writes that failed (each is logged once per VM until it succeeds again).
    pub errors: u64,
}

/// One zone file of one VM.
#[derive(Debug)]
struct ZoneFile {
    kind: ZoneKind,
    dir: PathBuf,
    /// The counter, modulo the range, as last written.
    value: u64,
    /// The VM's cumulative energy of this kind in the snapshot, as last seen.
    last_total: u64,
}

/// A VM's tree, while the VM is in the snapshot.
#[derive(Debug)]
struct VmTree {
    dir: PathBuf,
    kinds: Vec<ZoneKind>,
    zones: Vec<ZoneFile>,
    /// True while writes fail, so the failure is logged once.
    failing: bool,
    /// The writer's tick in which the VM was last in the snapshot.
    seen_at: u64,
}

/// Writes every VM's tree each tick; see the [module docs](super) for the layout and why the
/// writes are renames.
#[derive(Debug)]
pub struct PassthroughWriter {
    opts: PassthroughWriterOptions,
    vms: HashMap<Arc<str>, VmTree>,
    stats: WriterStats,
    /// Ids that cannot name a directory, logged once each.
    unnamable: Vec<Arc<str>>,
    /// Calls to [`PassthroughWriter::write`] so far.
    ticks: u64,
}

impl PassthroughWriter {
    /// Creates `dir` when missing and checks that a file can be created in it, so that a
    /// wrong directory fails at start, not silently on every tick.
    pub fn new(opts: PassthroughWriterOptions) -> Result<PassthroughWriter, Error> {
        if opts.max_energy_range.0 == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                Some(&opts.dir),
                "max_energy_range_uj must be above 0",
            ));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&opts.dir)
            .map_err(|e| Error::io(&opts.dir, &e))?;
        let probe = opts.dir.join(".kepler-write-probe");
        replace_file(&probe, b"").map_err(|e| Error::io(&probe, &e))?;
        let _ = fs::remove_file(&probe);
        Ok(PassthroughWriter {
            opts,
            vms: HashMap::new(),
            stats: WriterStats::default(),
            unnamable: Vec::new(),
            ticks: 0,
        })
    }

    /// Counters since start.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Writes the tree of every VM in `snap` (running, and terminated ones during their TTL:
    /// their totals no longer move). A VM that has left the snapshot keeps its files as last
    /// written (frozen), so that the same VM, started again, continues from there.
    pub fn write(&mut self, snap: &Snapshot) {
        if snap.kinds.is_empty() {
            return;
        }
        self.ticks += 1;
        let tick = self.ticks;
        for vm in &snap.vms {
            let id = &vm.info.id;
            if !self.vms.contains_key(id) || self.vms[id].kinds != snap.kinds {
                let Some(tree) = self.open_tree(id, &snap.kinds, snap) else {
                    continue;
                };
                self.vms.insert(Arc::clone(id), tree);
            }
            let Some(tree) = self.vms.get_mut(id) else {
                continue;
            };
            tree.seen_at = tick;
            let range = self.opts.max_energy_range.0;
            let mut failure: Option<(PathBuf, io::Error)> = None;
            for z in &mut tree.zones {
                let total = vm.energy.total.get(z.kind).0;
                // A total below the last one is a new entry for the same id (the VM left the
                // snapshot and came back): all of it is new energy.
                let delta = total.checked_sub(z.last_total).unwrap_or(total);
                z.last_total = total;
                z.value = ((z.value as u128 + delta as u128) % range as u128) as u64;
                let path = z.dir.join(ENERGY_FILE);
                match write_value(&path, z.value, &mut self.stats) {
                    Ok(()) => {}
                    Err(e) => {
                        self.stats.errors += 1;
                        failure.get_or_insert((path, e));
                    }
                }
            }
            match failure {
                Some((path, e)) if !tree.failing => {
                    tree.failing = true;
                    tracing::warn!(vm = %id, dir = %tree.dir.display(), file = %path.display(), error = %e, "cannot write VM passthrough energy; the guest will see it go stale");
                }
                None if tree.failing => {
                    tree.failing = false;
                    tracing::info!(vm = %id, "VM passthrough energy written again");
                }
                _ => {}
            }
        }
        self.vms.retain(|_, tree| tree.seen_at == tick);
    }

    /// Creates (or finds) a VM's tree for `kinds`, continuing each counter from the value
    /// already in the file, so that a kepler restart does not set the guest's counter back.
    fn open_tree(&mut self, id: &Arc<str>, kinds: &[ZoneKind], snap: &Snapshot) -> Option<VmTree> {
        let Some(name) = dir_name(id) else {
            if !self.unnamable.contains(id) {
                tracing::warn!(vm = %id, "VM id cannot name a passthrough directory (empty or too long); not written");
                self.unnamable.push(Arc::clone(id));
            }
            return None;
        };
        let dir = self.opts.dir.join(name);
        let range = self.opts.max_energy_range.0;
        let mut zones = Vec::new();
        let created = (|| -> io::Result<()> {
            make_dir(&dir)?;
            let policy = format!("{}\n", snap.idle_policy.label());
            replace_counted(
                &dir.join(IDLE_POLICY_FILE),
                policy.as_bytes(),
                &mut self.stats,
            )?;
            let estimated = snap
                .zones
                .iter()
                .any(|z| z.info.kind.is_cpu() && z.info.estimated);
            let estimated = if estimated { "true\n" } else { "false\n" };
            replace_counted(
                &dir.join(ESTIMATED_FILE),
                estimated.as_bytes(),
                &mut self.stats,
            )?;
            for z in layout(kinds) {
                let mut zdir = dir.clone();
                for c in &z.components {
                    zdir.push(c);
                    make_dir(&zdir)?;
                }
                let value = previous_value(&zdir, range);
                replace_counted(
                    &zdir.join(NAME_FILE),
                    format!("{}\n", z.name).as_bytes(),
                    &mut self.stats,
                )?;
                replace_counted(
                    &zdir.join(RANGE_FILE),
                    format!("{range}\n").as_bytes(),
                    &mut self.stats,
                )?;
                zones.push(ZoneFile {
                    kind: z.kind,
                    dir: zdir,
                    value,
                    last_total: 0,
                });
            }
            Ok(())
        })();
        if let Err(e) = created {
            self.stats.errors += 1;
            tracing::warn!(vm = %id, dir = %dir.display(), error = %e, "cannot create VM passthrough tree");
            return None;
        }
        tracing::info!(vm = %id, dir = %dir.display(), "writing VM passthrough energy");
        Some(VmTree {
            dir,
            kinds: kinds.to_vec(),
            zones,
            failing: false,
            seen_at: 0,
        })
    }
}

/// The counter a previous run left in `zdir`, so the new run continues it; 0 when there is
/// none. A value that is not one the writer writes is logged and replaced by 0.
fn previous_value(zdir: &Path, range: u64) -> u64 {
    let path = zdir.join(ENERGY_FILE);
    let mut buf = Vec::with_capacity(32);
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .and_then(|f| f.take(64).read_to_end(&mut buf));
    match read {
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "previous VM passthrough counter unreadable; starting at 0");
            0
        }
        Ok(_) => match parse_written(&buf) {
            Ok(v) if v < range => v,
            Ok(v) => {
                tracing::warn!(file = %path.display(), value = v, range, "previous VM passthrough counter beyond max_energy_range_uj; wrapped into range");
                v % range
            }
            Err(detail) => {
                tracing::warn!(file = %path.display(), error = %detail, "previous VM passthrough counter unparsable; starting at 0");
                0
            }
        },
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // A symlink or a file where a directory belongs is not written through.
            if fs::symlink_metadata(dir)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{} exists and is not a directory",
                    dir.display()
                )))
            }
        }
        other => other,
    }
}

/// One counter value, replaced whole.
fn write_value(path: &Path, value: u64, stats: &mut WriterStats) -> io::Result<()> {
    let mut line = [0u8; 21];
    let mut cursor = io::Cursor::new(&mut line[..]);
    writeln!(cursor, "{value}")?;
    let len = cursor.position() as usize;
    replace_counted(path, &line[..len], stats)
}

fn replace_counted(path: &Path, content: &[u8], stats: &mut WriterStats) -> io::Result<()> {
    replace_file(path, content)?;
    stats.files_written += 1;
    stats.bytes_written += content.len() as u64;
    Ok(())
}

/// Writes `content` to a temporary name beside `path` and renames it over `path`: a reader
/// opens the old file or the new one, never a partial one. The temporary file is created
/// exclusively (`O_EXCL` does not follow a symlink planted at its name); one left by a crash
/// is removed first.
fn replace_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
    };
    let mut file: File = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp)?;
            open()?
        }
        other => other?,
    };
    let written = file.write_all(content);
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
