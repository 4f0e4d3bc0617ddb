//! Temporaries beside their targets. Named `.<target>.attnframes-<pid>.tmp` — hidden, and
//! recognisable as ours; registered while alive, so that an interrupted command can remove
//! them ([`remove_live_temporaries`]); and swept when a later run towards the same target
//! finds ones whose process is gone (a run killed with SIGKILL cannot clean up after itself).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::writer::{Result, SinkError};

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

const MARK: &str = ".attnframes-";

/// A fresh temporary for `target` in its directory (so the final rename stays on one file
/// system), after removing stale temporaries of the same target.
pub(crate) fn temp_path(target: &Path) -> Result<PathBuf> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let bad = |reason: String| SinkError::Output {
        path: target.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(bad(format!(
            "output directory {} does not exist",
            dir.display()
        )));
    }
    if target.is_dir() {
        return Err(bad("is a directory".into()));
    }
    let name = target
        .file_name()
        .ok_or_else(|| bad("not a file name".into()))?
        .to_string_lossy()
        .into_owned();
    let prefix = format!(".{name}{MARK}");
    sweep_stale(&dir, &prefix);
    let temp = dir.join(format!("{prefix}{}.tmp", std::process::id()));
    LIVE.lock()
        .expect("temporaries registry")
        .push(temp.clone());
    Ok(temp)
}

/// Forgets `temp` (renamed into place, or removed).
pub(crate) fn release(temp: &Path) {
    LIVE.lock()
        .expect("temporaries registry")
        .retain(|t| t != temp);
}

/// Removes every temporary this process still has open: for a command interrupted by a
/// signal, which then exits without running destructors.
pub fn remove_live_temporaries() {
    // A poisoned lock still holds the list; an interrupt must clean up regardless.
    let live = match LIVE.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    for t in live.iter() {
        let _ = std::fs::remove_file(t);
    }
}

/// Removes `<prefix><pid>.tmp` files in `dir` whose process no longer exists.
fn sweep_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 != std::process::id() && !process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that `pid` exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.parquet");
        // pid 4_000_000 is beyond Linux's default pid_max: no such process.
        let stale = d.path().join(".out.parquet.attnframes-4000000.tmp");
        let other = d.path().join(".other.parquet.attnframes-4000000.tmp");
        let ours_alive = d.path().join(format!(".out.parquet.attnframes-{}.tmp", 1));
        for f in [&stale, &other, &ours_alive] {
            std::fs::write(f, b"x").unwrap();
        }
        let temp = temp_path(&target).unwrap();
        assert!(!stale.exists(), "the dead process's temporary is swept");
        assert!(other.exists(), "another target's temporary is left alone");
        assert!(ours_alive.exists(), "pid 1 is alive: its temporary stays");
        assert!(temp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".out.parquet.attnframes-"));
        release(&temp);
    }
}
