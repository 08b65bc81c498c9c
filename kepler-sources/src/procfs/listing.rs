//! Which pids a scan reads: every numeric directory of `<root>`, or, on this process's own
//! procfs, the pids of the previous scan that still live plus only those created since.
//!
//! Listing `/proc` costs the kernel a dentry lookup per process (about 9 ms per tick at
//! 10,000 processes, a fifth of a warm scan once idle processes are read through
//! `schedstat`). New processes get increasing pids: the fifth field of `<root>/loadavg` is
//! the last pid handed out, and the offset of `<root>/<pid>` in the directory is the pid
//! plus `TGID_OFFSET`, so a listing can start right after the last pid of the previous
//! scan. Exits need no listing: reading a gone process fails and drops it.
//!
//! The shortcut is taken only when it is safe: the root is this process's procfs (its
//! `self` is this process, so `loadavg` speaks of the same pid namespace), a seek to this
//! process's own offset lists this process first (the offset scheme holds), and the last
//! pid did not go down (pids wrapped around `pid_max`). Every [`FULL_EVERY`] scans the whole
//! directory is listed anyway, for processes given a chosen pid below the last one
//! (checkpoint/restore).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::host::parse_u32;

/// `TGID_OFFSET` of the kernel's `fs/proc/base.c` (`FIRST_PROCESS_ENTRY` 256 + 2).
const TGID_OFFSET: u64 = 258;
/// A full listing at least this often (about a minute at the default 5 s interval).
pub(super) const FULL_EVERY: u32 = 12;

/// How a source lists pids; see the module docs.
#[derive(Debug)]
pub(super) struct PidListing {
    /// Whether the shortcut may be used on this root at all.
    incremental: bool,
    last_pid: Option<u32>,
    since_full: u32,
    /// Scans that listed only new pids, since construction.
    pub(super) incremental_scans: u64,
}

impl PidListing {
    pub(super) fn new(root: &Path) -> PidListing {
        PidListing {
            incremental: own_procfs(root) && offsets_hold(root),
            last_pid: None,
            since_full: 0,
            incremental_scans: 0,
        }
    }

    /// Fills `pids`, ascending, with the pids to scan. `pids` holds the previous scan's
    /// list; `live` tells which of them are still known to live.
    pub(super) fn list(
        &mut self,
        root: &Path,
        pids: &mut Vec<u32>,
        live: impl Fn(u32) -> bool,
    ) -> io::Result<()> {
        let now = if self.incremental {
            last_pid(root)
        } else {
            None
        };
        let from = match (self.last_pid, now) {
            (Some(prev), Some(now)) if now >= prev && self.since_full < FULL_EVERY => {
                prev.checked_add(1)
            }
            _ => None,
        };
        match from {
            Some(from) => {
                pids.retain(|&p| live(p));
                // A process created after `loadavg` was read can be listed now and again
                // next time: keep each pid once.
                list_from(root, from, pids)?;
                pids.sort_unstable();
                pids.dedup();
                self.since_full += 1;
                self.incremental_scans += 1;
            }
            None => {
                pids.clear();
                list_all(root, pids)?;
                pids.sort_unstable();
                self.since_full = 0;
            }
        }
        self.last_pid = now;
        Ok(())
    }
}

/// Every numeric entry of `root`. A failing readdir ends the listing; what was read so far
/// is still good.
fn list_all(root: &Path, pids: &mut Vec<u32>) -> io::Result<()> {
    let dir = std::fs::read_dir(root)?;
    pids.extend(
        dir.filter_map(Result::ok)
            .filter_map(|entry| parse_u32(entry.file_name().as_bytes())),
    );
    Ok(())
}

/// The numeric entries of the procfs `root` from pid `from` on.
fn list_from(root: &Path, from: u32, pids: &mut Vec<u32>) -> io::Result<()> {
    let mut file = File::open(root)?;
    file.seek(SeekFrom::Start(TGID_OFFSET + u64::from(from)))?;
    let mut dir = nix::dir::Dir::from_fd(OwnedFd::from(file)).map_err(io::Error::from)?;
    pids.extend(
        dir.iter()
            .filter_map(Result::ok)
            .filter_map(|entry| parse_u32(entry.file_name().to_bytes()))
            .filter(|&p| p >= from),
    );
    Ok(())
}

/// The last pid handed out in this pid namespace: the fifth field of `<root>/loadavg`
/// (`0.10 0.05 0.01 1/123 4567`).
fn last_pid(root: &Path) -> Option<u32> {
    let text = std::fs::read(root.join("loadavg")).ok()?;
    let field = text.split(|b| b.is_ascii_whitespace()).nth(4)?;
    parse_u32(field)
}

/// Whether `root` is the procfs of this process's pid namespace.
fn own_procfs(root: &Path) -> bool {
    std::fs::read_link(root.join("self")).is_ok_and(|target| {
        target.as_os_str().as_bytes() == std::process::id().to_string().as_bytes()
    })
}

/// Whether seeking to this process's offset lists this process first.
fn offsets_hold(root: &Path) -> bool {
    let me = std::process::id();
    let mut pids = Vec::new();
    list_from(root, me, &mut pids).is_ok() && pids.first() == Some(&me)
}
