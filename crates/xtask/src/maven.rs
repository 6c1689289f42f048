//! Downloading jars from Maven Central into the user cache, once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::process;

const MARKER: &str = ".complete";

/// Returns `dir` once it holds a complete download (`label` prefixes progress lines,
/// `what` names the download in errors). Otherwise runs `mvn` with
/// `args_for(partial_dir)` into a scratch directory and renames it into place, so an
/// interrupted download is never mistaken for a finished one.
pub fn fetch_once(
    label: &str,
    what: &str,
    dir: &Path,
    log: &Path,
    args_for: impl FnOnce(&Path) -> Vec<String>,
) -> Result<PathBuf> {
    let marker = dir.join(MARKER);
    if marker.is_file() {
        return Ok(dir.to_path_buf());
    }
    let mvn = process::require_program(
        "mvn",
        "install Maven 3.8+ (apt-get install maven) so xtask can fetch jars from Maven Central",
    )?;
    let mut partial = dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    for stale in [&partial, &dir.to_path_buf()] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("could not clear {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&partial)?;
    eprintln!(
        "{label}: downloading {what} from Maven Central into {}",
        dir.display()
    );
    let mut cmd = Command::new(mvn);
    cmd.args(["-q", "-B", "-Dstyle.color=never"])
        .args(args_for(&partial))
        .current_dir(&partial)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("could not run {}", process::describe(&cmd)))?;
    let transcript = format!(
        "$ {}\n{}{}",
        process::describe(&cmd),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(log, &transcript)?;
    if !out.status.success() {
        bail!(
            "could not fetch {what} from Maven Central: {}; check network access to the \
             registry (details in {})",
            first_error(&transcript).unwrap_or(&format!("mvn failed ({})", out.status)),
            log.display()
        );
    }
    std::fs::rename(&partial, dir)?;
    std::fs::write(&marker, "")?;
    Ok(dir.to_path_buf())
}

/// The first line Maven marks as an error, usually naming the artifact and the cause.
fn first_error(transcript: &str) -> Option<&str> {
    transcript
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("[ERROR]"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::first_error;

    #[test]
    fn picks_first_maven_error() {
        let out = "[INFO] x\n[ERROR] Failed to execute goal: Could not transfer artifact\n[ERROR] -> [Help 1]\n";
        assert_eq!(
            first_error(out),
            Some("Failed to execute goal: Could not transfer artifact")
        );
        assert_eq!(first_error("no errors here"), None);
    }
}
