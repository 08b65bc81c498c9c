//! The command's processes: started through a trampoline (kepler itself) that joins the
//! cgroup and stops until the baseline reading is taken, signals forwarded to it, and the
//! wait for it and every process it started.
//!
//! kepler is the command's parent and a child subreaper, so processes orphaned inside the
//! command's tree are re-parented to kepler rather than to init: "all descendants have
//! exited" is "kepler has no running child". Exited children are left as zombies (`waitid`
//! with `WNOWAIT`) until the last reading, so that their final CPU time is still in `/proc`
//! for it, and reaped after it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use nix::sys::signal::{kill, raise, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::signal::*;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

/// The hidden first argument with which kepler runs itself as the trampoline.
pub const EXEC_CHILD: &str = "__kepler-run-exec";

/// Exit code when the command could not be moved into its cgroup (as `env` and container
/// runtimes use 125 for "the wrapper failed").
const WRAPPER_FAILED: u8 = 125;

/// Signals forwarded to the command; SIGCHLD is watched for the wait.
const FORWARDED: [i32; 8] = [
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH,
];

/// What the signal thread tells the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A child changed state.
    Child,
}

/// The trampoline: `kepler __kepler-run-exec PROCS -- CMD [ARGS...]`. Joins the cgroup whose
/// `cgroup.procs` is PROCS (`-`: none), stops until kepler has taken its first reading, then
/// becomes CMD.
pub fn exec_child(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    let procs = args.next().unwrap_or_default();
    let _separator = args.next();
    let Some(program) = args.next() else {
        eprintln!("kepler run: no command");
        return ExitCode::from(WRAPPER_FAILED);
    };
    if procs != "-" {
        if let Err(e) = super::confine::join(Path::new(&procs)) {
            eprintln!(
                "kepler run: cannot move the command into its cgroup ({}): {e}",
                Path::new(&procs).display()
            );
            return ExitCode::from(WRAPPER_FAILED);
        }
    }
    // kepler continues us after its baseline reading.
    let _ = raise(Signal::SIGSTOP);
    let e = Command::new(&program).args(args).exec();
    eprintln!("kepler run: cannot run {}: {e}", program.to_string_lossy());
    // The shells' codes: 127 not found, 126 found but not runnable.
    ExitCode::from(if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Ended {
    /// kepler's own exit code: the command's, or 128+N when signal N killed it.
    pub fn exit_code(self) -> u8 {
        match self {
            Ended::Code(c) => (c & 0xff) as u8,
            Ended::Signal(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

/// The running command.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    procfs: PathBuf,
    ended: Option<Ended>,
}

/// Watches signals from now on: forwards them to the command once `target` holds its pid
/// (a signal that comes before is kept and sent then), and to the orphans of its tree that
/// were re-parented to kepler (after the command exits, those are what kepler waits for);
/// reports SIGCHLD on `events`.
///
/// A signal the kernel sent (a terminal's Ctrl-C, Ctrl-\ or resize) went to the whole
/// foreground process group, the command included, so it is not sent a second time.
pub fn watch_signals(events: Sender<Event>, procfs: &Path) -> io::Result<Arc<AtomicI32>> {
    let procfs = procfs.to_path_buf();
    let target = Arc::new(AtomicI32::new(0));
    let mut watched = FORWARDED.to_vec();
    watched.push(SIGCHLD);
    let mut signals = SignalsInfo::<WithOrigin>::new(&watched)?;
    let t = Arc::clone(&target);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                if origin.signal == SIGCHLD {
                    let _ = events.send(Event::Child);
                    continue;
                }
                if origin.cause == Cause::Kernel {
                    continue;
                }
                let pid = t.load(Ordering::SeqCst);
                if pid > 0 {
                    if let Ok(sig) = Signal::try_from(origin.signal) {
                        let _ = kill(Pid::from_raw(pid), sig);
                        for orphan in children_of(&procfs, std::process::id()) {
                            if orphan as i32 != pid {
                                let _ = kill(Pid::from_raw(orphan as i32), sig);
                            }
                        }
                    }
                } else {
                    // Before the command exists: keep the latest, delivered after it starts.
                    t.store(-origin.signal, Ordering::SeqCst);
                }
            }
        })?;
    Ok(target)
}

impl Child {
    /// Starts the trampoline for `command` (joining `procs` when given) and waits until it
    /// has stopped, ready to become the command. kepler becomes a child subreaper first.
    pub fn spawn(command: &[OsString], procs: Option<&Path>, procfs: &Path) -> io::Result<Child> {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphaned processes of the command are not waited for");
        }
        // kepler itself, through /proc: its path may not be walkable by the user kepler runs
        // as (a build under /root run as nobody), and the file may have been replaced since.
        let child = Command::new("/proc/self/exe")
            .arg(EXEC_CHILD)
            .arg(procs.map_or_else(|| OsString::from("-"), |p| p.as_os_str().to_owned()))
            .arg("--")
            .args(command)
            .spawn()?;
        let pid = Pid::from_raw(child.id() as i32);
        let mut c = Child {
            pid,
            procfs: procfs.to_path_buf(),
            ended: None,
        };
        // Stopped (ready) or exited (the trampoline failed: its message is on stderr).
        loop {
            match waitid(
                Id::Pid(pid),
                WaitPidFlag::WSTOPPED | WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::Stopped(..)) => {
                    // Consume the stop notification.
                    let _ = waitid(Id::Pid(pid), WaitPidFlag::WSTOPPED);
                    break;
                }
                Ok(WaitStatus::Exited(_, code)) => {
                    c.ended = Some(Ended::Code(code));
                    break;
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    c.ended = Some(Ended::Signal(sig as i32));
                    break;
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(c)
    }

    /// The command's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the stopped trampoline become the command, and points signal forwarding at it.
    pub fn resume(&self, target: &AtomicI32) {
        let pending = target.swap(self.pid.as_raw(), Ordering::SeqCst);
        let _ = kill(self.pid, Signal::SIGCONT);
        if pending < 0 {
            if let Ok(sig) = Signal::try_from(-pending) {
                let _ = kill(self.pid, sig);
            }
        }
    }

    /// How the command ended, once it has (it stays a zombie until [`Child::reap_all`]).
    pub fn ended(&mut self) -> Option<Ended> {
        if self.ended.is_none() {
            self.ended = exited(self.pid);
        }
        self.ended
    }

    /// kepler's children (the command and orphans of its tree), running or not.
    pub fn children(&self) -> Vec<u32> {
        children_of(&self.procfs, std::process::id())
    }

    /// True while a process of the command's tree runs: the command, or a child of kepler
    /// (an orphan re-parented here) that has not exited.
    pub fn tree_running(&mut self) -> bool {
        if self.ended().is_none() {
            return true;
        }
        self.children()
            .into_iter()
            .filter(|&p| p != self.pid())
            .any(|p| exited(Pid::from_raw(p as i32)).is_none() && is_child(p))
    }

    /// Reaps the command and every exited child; returns nothing, the statuses are known.
    pub fn reap_all(&mut self) {
        let _ = waitpid(self.pid, None);
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// The exit status of child `pid` without reaping it; `None` while it runs.
fn exited(pid: Pid) -> Option<Ended> {
    match waitid(
        Id::Pid(pid),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
        Ok(WaitStatus::Exited(_, code)) => Some(Ended::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Ended::Signal(sig as i32)),
        _ => None,
    }
}

/// False when `pid` is gone or not our child (waitid says ECHILD).
fn is_child(pid: u32) -> bool {
    waitid(
        Id::Pid(Pid::from_raw(pid as i32)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    )
    .is_ok()
}

/// Children of `pid`, from every thread's `task/<tid>/children`.
pub fn children_of(procfs: &Path, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(procfs.join(pid.to_string()).join("task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every descendant of `pid` with its start time (clock ticks since boot, as the activity
/// source identifies processes).
pub fn descendants(procfs: &Path, pid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut stack = children_of(procfs, pid);
    while let Some(p) = stack.pop() {
        if let Some(start) = start_time(procfs, p) {
            out.push((p, start));
        }
        stack.extend(children_of(procfs, p));
    }
    out
}

/// Field 22 of `/proc/<pid>/stat`.
fn start_time(procfs: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(procfs.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shells() {
        assert_eq!(Ended::Code(3).exit_code(), 3);
        assert_eq!(Ended::Code(256 + 4).exit_code(), 4);
        assert_eq!(Ended::Signal(9).exit_code(), 137);
        assert_eq!(Ended::Signal(15).exit_code(), 143);
    }

    #[test]
    fn start_time_reads_past_a_name_with_parentheses() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("42")).unwrap();
        let mut fields = vec!["0"; 40];
        fields[19] = "777";
        fs::write(
            d.path().join("42/stat"),
            format!("42 (a) b) R {}", fields[1..].join(" ")),
        )
        .unwrap();
        assert_eq!(start_time(d.path(), 42), Some(777));
        assert_eq!(start_time(d.path(), 43), None);
    }
}
