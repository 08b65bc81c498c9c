//! Stamps the git revision, branch and rustc version into the binary for `kepler_build_info`
//! (issue 14, item 7: they were always "unknown").
//!
//! The revision is read from the checkout's files rather than from `git`, so a machine without
//! git, or a CI container where git refuses a checkout owned by another user
//! ("dubious ownership"), still gets it; `git rev-parse` is only the fallback for layouts the
//! file reader does not know (reftable). "unknown" is written only when no checkout holds the
//! sources (a crates.io tarball, a source archive) and nothing overrides it:
//! `KEPLER_GIT_REVISION` / `KEPLER_GIT_BRANCH` set in the build environment win, for
//! distribution builds from an archive.
//!
//! Rebuilds: cargo reruns this script when the checkout's `HEAD` or the current branch's ref
//! changes (so a new commit rebuilds with its revision), and only then: watching the whole
//! `refs/` directory would rebuild after every commit on any branch of a shared clone.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEPLER_GIT_REVISION");
    println!("cargo:rerun-if-env-changed=KEPLER_GIT_BRANCH");

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let git = find_git(&manifest).and_then(|dot_git| {
        let repo = Repo::open(&dot_git)?;
        for path in repo.watched() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        Some(repo)
    });
    let (revision, branch) = match &git {
        Some(repo) => {
            let (rev, branch) = repo.head();
            let rev = rev.or_else(|| git_command(&manifest, &["rev-parse", "HEAD"]));
            (rev, Some(branch))
        }
        None => (None, None),
    };
    let revision = env_override("KEPLER_GIT_REVISION")
        .or(revision)
        .unwrap_or_else(|| "unknown".into());
    let branch = env_override("KEPLER_GIT_BRANCH")
        .or(branch)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEPLER_GIT_REVISION={revision}");
    println!("cargo:rustc-env=KEPLER_GIT_BRANCH={branch}");
    println!("cargo:rustc-env=KEPLER_RUSTC_VERSION={}", rustc_version());
}

fn env_override(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `1.85.0` from `rustc 1.85.0 (4d91de4e4 2025-02-17)`, asked of the compiler cargo uses.
fn rustc_version() -> String {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The nearest `.git` at or above `dir`: a directory in a clone, a file in a worktree or a
/// submodule.
fn find_git(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(".git")).find(|p| p.exists())
}

/// The files of one checkout that say what `HEAD` is.
struct Repo {
    /// The `.git` entry itself (its `gitdir:` line moves when a worktree is moved).
    dot_git: PathBuf,
    /// This checkout's own git directory: holds `HEAD`.
    git_dir: PathBuf,
    /// The directory shared by all worktrees: holds `refs/` and `packed-refs`.
    common_dir: PathBuf,
}

impl Repo {
    fn open(dot_git: &Path) -> Option<Repo> {
        let git_dir = if dot_git.is_dir() {
            dot_git.to_path_buf()
        } else {
            // A worktree or submodule: `gitdir: <path>`, relative to the `.git` file's folder.
            let text = fs::read_to_string(dot_git).ok()?;
            let target = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
            dot_git.parent()?.join(target)
        };
        let common_dir = match fs::read_to_string(git_dir.join("commondir")) {
            Ok(rel) => git_dir.join(rel.trim()),
            Err(_) => git_dir.clone(),
        };
        Some(Repo {
            dot_git: dot_git.to_path_buf(),
            git_dir,
            common_dir,
        })
    }

    /// `(revision, branch)`: the branch is `HEAD` when detached (as `git rev-parse
    /// --abbrev-ref HEAD` says); the revision is `None` when the file reader cannot resolve it.
    fn head(&self) -> (Option<String>, String) {
        let Ok(head) = fs::read_to_string(self.git_dir.join("HEAD")) else {
            return (None, "unknown".into());
        };
        let head = head.trim();
        match head.strip_prefix("ref:").map(str::trim) {
            Some(reference) => {
                let branch = reference
                    .strip_prefix("refs/heads/")
                    .unwrap_or(reference)
                    .to_string();
                (self.resolve(reference), branch)
            }
            None => (Some(head.to_string()).filter(|h| is_hash(h)), "HEAD".into()),
        }
    }

    /// A loose ref file, else its line in `packed-refs`.
    fn resolve(&self, reference: &str) -> Option<String> {
        for dir in [&self.git_dir, &self.common_dir] {
            if let Ok(text) = fs::read_to_string(dir.join(reference)) {
                let text = text.trim();
                if is_hash(text) {
                    return Some(text.to_string());
                }
            }
        }
        let packed = fs::read_to_string(self.common_dir.join("packed-refs")).ok()?;
        packed.lines().find_map(|line| {
            let (hash, name) = line.split_once(' ')?;
            (name.trim() == reference && is_hash(hash)).then(|| hash.to_string())
        })
    }

    /// What a new commit, a checkout or a `git pack-refs` touches. A loose ref that does not
    /// exist yet is watched through its folder (cargo reruns on every build for a missing
    /// path).
    fn watched(&self) -> Vec<PathBuf> {
        let mut out = vec![self.git_dir.join("HEAD")];
        // A `.git` file (worktree, submodule) is watched; a `.git` folder would be scanned
        // whole by cargo, objects included.
        if self.dot_git.is_file() {
            out.push(self.dot_git.clone());
        }
        let packed = self.common_dir.join("packed-refs");
        if packed.exists() {
            out.push(packed);
        }
        if let Ok(head) = fs::read_to_string(self.git_dir.join("HEAD")) {
            if let Some(reference) = head.trim().strip_prefix("ref:").map(str::trim) {
                let loose = self.common_dir.join(reference);
                if loose.exists() {
                    out.push(loose);
                } else if let Some(parent) = loose.ancestors().skip(1).find(|p| p.exists()) {
                    out.push(parent.to_path_buf());
                }
            }
        }
        out
    }
}

/// A SHA-1 or SHA-256 object name.
fn is_hash(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git_command(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && is_hash(&s)).then_some(s)
}
