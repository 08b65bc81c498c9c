//! The guest side: the `passthrough` CPU meter, reading the tree its host's kepler writes.
//!
//! Every file is opened component by component from a descriptor of the mount point with
//! `O_NOFOLLOW`, so a symlink anywhere below `passthrough.path` is refused (named in the
//! error), and nothing outside the mount is ever opened. Counters wrap at
//! `max_energy_range_uj` as RAPL's do (the engine unwraps them).
//!
//! Staleness: the host replaces every `energy_uj` every tick (a new inode and mtime, even
//! when the value has not moved). A zone whose file has not been replaced for
//! `passthrough.staleAfter`, on the guest's own clock (host and guest clocks need not agree),
//! is stale: its readings become [`ReadError::Stale`], which keeps it out of the exposition
//! rather than flat-lining, and one warning says so; one more says when it moves again.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kepler_core::{
    MicroJoules, Nanos, PowerFrame, PowerSource, ReadError, Reading, SourceKind, SourceReport,
    Timestamp, ZoneInfo, ZoneKind, ZoneLabels,
};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

use super::{parse_written, ENERGY_FILE, ESTIMATED_FILE, IDLE_POLICY_FILE, NAME_FILE, RANGE_FILE};
use crate::powercap::parse_zone_dir;
use crate::{Error, ErrorKind};

/// Bytes read from a file; anything the writer writes is shorter.
const READ_BUF: usize = 64;

/// Where the guest's tree is mounted and when it counts as stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughOptions {
    /// `passthrough.path`: the mount point of this VM's directory.
    pub path: PathBuf,
    /// `passthrough.staleAfter`: a zone not rewritten for this long is stale.
    pub stale_after: Duration,
}

/// What a component open can fail with, named for the error message. `O_NOFOLLOW` on a
/// symlink fails with `ELOOP`, or `ENOTDIR` when a directory was asked for, so the entry is
/// looked at (without following it) to say which.
fn open_error(what: &str, root: &Path, at: &OwnedFd, name: &str, e: Errno) -> ReadError {
    let is_link = matches!(e, Errno::ELOOP | Errno::ENOTDIR)
        && fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
        });
    let e = if is_link { Errno::ELOOP } else { e };
    match e {
        Errno::ENOENT => ReadError::Missing {
            what: what.to_owned(),
        },
        Errno::ELOOP => ReadError::Io {
            what: what.to_owned(),
            detail: format!(
                "is a symbolic link, not followed: the passthrough meter reads nothing outside {}",
                root.display()
            ),
        },
        Errno::ENOTDIR => ReadError::Io {
            what: what.to_owned(),
            detail: "a path component is not a directory".to_owned(),
        },
        Errno::EACCES | Errno::EPERM => ReadError::NotPermitted {
            what: what.to_owned(),
            needs: "read access to the shared passthrough directory".to_owned(),
        },
        e => ReadError::Io {
            what: what.to_owned(),
            detail: e.desc().to_owned(),
        },
    }
}

/// Opens `components` below `root` without following any symlink; the last one is a
/// regular file.
fn open_beneath(root: &OwnedFd, root_path: &Path, components: &[&str]) -> Result<File, ReadError> {
    let what = || {
        let mut p = root_path.to_path_buf();
        p.extend(components);
        p.display().to_string()
    };
    let Some((file, dirs)) = components.split_last() else {
        return Err(ReadError::Missing { what: what() });
    };
    let mut dir: Option<OwnedFd> = None;
    for c in dirs {
        let at = dir.as_ref().unwrap_or(root);
        let fd = openat(
            at,
            *c,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_error(&what(), root_path, at, c, e))?;
        dir = Some(fd);
    }
    let at = dir.as_ref().unwrap_or(root);
    let fd = openat(
        at,
        *file,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| open_error(&what(), root_path, at, file, e))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| ReadError::Io {
        what: what(),
        detail: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(ReadError::Io {
            what: what(),
            detail: "not a regular file".to_owned(),
        });
    }
    Ok(file)
}

/// Reads a whole small file the writer wrote and parses it.
fn read_number(file: &File, what: &str) -> Result<u64, ReadError> {
    let mut buf = [0u8; READ_BUF];
    let n = file.read_at(&mut buf, 0).map_err(|e| ReadError::Io {
        what: what.to_owned(),
        detail: e.to_string(),
    })?;
    if n == buf.len() {
        return Err(ReadError::Parse {
            what: what.to_owned(),
            detail: format!("value longer than {} bytes", READ_BUF - 1),
        });
    }
    parse_written(&buf[..n]).map_err(|detail| ReadError::Parse {
        what: what.to_owned(),
        detail,
    })
}

/// Reads a small text file below the root, trimmed.
fn read_text(root: &OwnedFd, root_path: &Path, components: &[&str]) -> Result<String, ReadError> {
    let file = open_beneath(root, root_path, components)?;
    let mut buf = [0u8; READ_BUF];
    let n = file.read_at(&mut buf, 0).map_err(|e| ReadError::Io {
        what: components.join("/"),
        detail: e.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// A file's identity and value: a new inode and mtime each time the host replaces it.
type Signature = (u64, u64, i64, i64, u64);

/// One zone of the tree.
#[derive(Debug)]
struct Zone {
    /// Components of `energy_uj` below the root.
    components: Vec<String>,
    /// The counter's path, for errors.
    what: String,
    range: u64,
    /// The file as last seen, and when (guest clock) it last changed.
    seen: Option<(Signature, Timestamp)>,
    /// True while the zone is stale (logged once per episode).
    stale: bool,
    /// True while reads fail (logged once per episode).
    failing: bool,
}

/// The `passthrough` CPU meter: a VM's share of its host's measured energy.
#[derive(Debug)]
pub struct Passthrough {
    opts: PassthroughOptions,
    root: OwnedFd,
    zones: Vec<Arc<ZoneInfo>>,
    state: Vec<Zone>,
    /// `idle_policy` label on every zone.
    labels: Arc<[(&'static str, String)]>,
    /// True when the root should be opened again by path (it vanished last tick).
    reopen: bool,
}

fn open_root(path: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(path, &std::io::Error::from(e)))
}

impl Passthrough {
    /// Opens the tree mounted at `opts.path` and finds its zones. Errors name the path:
    /// [`ErrorKind::NotFound`] when it is absent or holds no zone; a zone that cannot be
    /// used (a symlink, no `name`, a bad range) is skipped with a warning that says why.
    pub fn discover(opts: &PassthroughOptions) -> Result<Passthrough, Error> {
        let root = open_root(&opts.path)?;
        let entries = std::fs::read_dir(&opts.path).map_err(|e| Error::io(&opts.path, &e))?;
        let mut dirs: Vec<(u32, Option<u32>, Vec<String>)> = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((top, None)) = parse_zone_dir(&name) else {
                continue;
            };
            dirs.push((top, None, vec![name.clone()]));
            // Sub-zones: only inside a real directory (a symlinked one fails below).
            let sub_path = opts.path.join(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                for sub in std::fs::read_dir(&sub_path).into_iter().flatten().flatten() {
                    let Some(sub_name) = sub.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if let Some((t, Some(m))) = parse_zone_dir(&sub_name) {
                        if t == top {
                            dirs.push((top, Some(m), vec![name.clone(), sub_name]));
                        }
                    }
                }
            }
        }
        dirs.sort();
        // A host whose own meter is the model hands over an estimate, and says so.
        let estimated = read_text(&root, &opts.path, &[ESTIMATED_FILE]).is_ok_and(|v| v == "true");
        let mut zones = Vec::new();
        let mut state = Vec::new();
        for (_, _, comps) in dirs {
            match Self::zone(&root, &opts.path, &comps, estimated) {
                Ok((info, z)) => {
                    zones.push(Arc::new(info));
                    state.push(z);
                }
                Err(e) => {
                    tracing::warn!(zone = %comps.join("/"), error = %e, "passthrough zone skipped")
                }
            }
        }
        if zones.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Some(&opts.path),
                "no usable intel-rapl zone in the passthrough tree (is the host's vm.passthrough directory of this VM mounted here?)",
            ));
        }
        let policy = read_text(&root, &opts.path, &[IDLE_POLICY_FILE]).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no idle_policy in the passthrough tree; recorded as unknown");
            "unknown".to_owned()
        });
        tracing::info!(path = %opts.path.display(), zones = zones.len(), host_idle_policy = %policy, "passthrough meter: reading the host's measurement of this VM");
        Ok(Passthrough {
            opts: opts.clone(),
            root,
            zones,
            state,
            labels: Arc::from(vec![("idle_policy", policy)]),
            reopen: false,
        })
    }

    /// One zone's description and state, from its `name` and `max_energy_range_uj`.
    fn zone(
        root: &OwnedFd,
        root_path: &Path,
        comps: &[String],
        estimated: bool,
    ) -> Result<(ZoneInfo, Zone), ReadError> {
        let with = |file: &'static str| -> Vec<&str> {
            comps.iter().map(String::as_str).chain([file]).collect()
        };
        let name = read_text(root, root_path, &with(NAME_FILE))?;
        let kind = ZoneKind::from_name(&name)
            .filter(|k| k.is_cpu())
            .ok_or_else(|| ReadError::Parse {
                what: with(NAME_FILE).join("/"),
                detail: format!("unknown zone name {name:?}"),
            })?;
        let range_what = with(RANGE_FILE).join("/");
        let range_file = open_beneath(root, root_path, &with(RANGE_FILE))?;
        let range = read_number(&range_file, &range_what)?;
        if range == 0 {
            return Err(ReadError::Parse {
                what: range_what,
                detail: "max_energy_range_uj is 0".to_owned(),
            });
        }
        // Content is checked per tick; opening now names a symlinked or missing counter early.
        open_beneath(root, root_path, &with(ENERGY_FILE))?;
        let mut dir = root_path.to_path_buf();
        dir.extend(comps);
        let path = dir.display().to_string();
        let info = ZoneInfo::builder(format!("passthrough:{path}"), kind, SourceKind::Passthrough)
            .path(path)
            .energy_counter(Some(MicroJoules(range)))
            .estimated(estimated)
            .build();
        let zone = Zone {
            components: with(ENERGY_FILE).into_iter().map(str::to_owned).collect(),
            what: dir.join(ENERGY_FILE).display().to_string(),
            range,
            seen: None,
            stale: false,
            failing: false,
        };
        Ok((info, zone))
    }

    /// One zone's counter now, with the file's signature.
    fn read_zone(&self, z: &Zone) -> Result<(u64, Signature), ReadError> {
        let comps: Vec<&str> = z.components.iter().map(String::as_str).collect();
        let file = open_beneath(&self.root, &self.opts.path, &comps)?;
        let meta = file.metadata().map_err(|e| ReadError::Io {
            what: z.what.clone(),
            detail: e.to_string(),
        })?;
        let value = read_number(&file, &z.what)?;
        if value >= z.range {
            return Err(ReadError::Parse {
                what: z.what.clone(),
                detail: format!("{value} is not below max_energy_range_uj {}", z.range),
            });
        }
        Ok((
            value,
            (
                meta.dev(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                value,
            ),
        ))
    }
}

impl PowerSource for Passthrough {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        if self.reopen {
            // The mount point was replaced (host directory recreated, share remounted).
            if let Ok(fd) = open_root(&self.opts.path) {
                self.root = fd;
            }
            self.reopen = false;
        }
        let stale_after = Nanos(self.opts.stale_after.as_nanos() as u64);
        for i in 0..self.zones.len() {
            let result = self.read_zone(&self.state[i]);
            let z = &mut self.state[i];
            let reading = match result {
                Ok((value, sig)) => {
                    if z.failing {
                        z.failing = false;
                        tracing::info!(zone = %z.what, "passthrough zone readable again");
                    }
                    let changed_at = match z.seen {
                        Some((prev, since)) if prev == sig => since,
                        _ => at,
                    };
                    z.seen = Some((sig, changed_at));
                    if at.since(changed_at) > stale_after {
                        if !z.stale {
                            z.stale = true;
                            tracing::warn!(zone = %z.what, stale_after = ?self.opts.stale_after, "passthrough zone stale: the host has not rewritten it (host kepler gone?); not exported until it moves again");
                        }
                        Err(ReadError::Stale {
                            what: z.what.clone(),
                        })
                    } else {
                        if z.stale {
                            z.stale = false;
                            tracing::info!(zone = %z.what, "passthrough zone moving again");
                        }
                        Ok(Reading::Energy(MicroJoules(value)))
                    }
                }
                Err(e) => {
                    if matches!(e, ReadError::Missing { .. }) {
                        self.reopen = true;
                    }
                    if !z.failing {
                        z.failing = true;
                        tracing::warn!(zone = %z.what, error = %e, "passthrough zone unreadable");
                    }
                    Err(e)
                }
            };
            out.push(&self.zones[i], reading);
        }
    }

    fn report(&self, _at: Timestamp, out: &mut SourceReport) {
        for z in &self.zones {
            out.zones.push(ZoneLabels {
                zone: Arc::clone(z),
                labels: Arc::clone(&self.labels),
                latest: None,
            });
        }
    }
}
