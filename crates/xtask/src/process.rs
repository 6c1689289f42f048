//! Running commands, background processes with pid files, and stopping them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Looks `name` up on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Like [`find_program`], but a missing program is a one-line error with the fix.
pub fn require_program(name: &str, fix: &str) -> Result<PathBuf> {
    find_program(name).with_context(|| format!("{name} not found: {fix}"))
}

pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` with inherited stdio; non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing output; returns stdout, or an error carrying stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", describe(cmd)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            format!("{stderr}{stdout}").trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Exit code to hand back to the shell for a child's status (128 + signal when killed).
pub fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Starts `cmd` in its own process group with output appended to `log`. The own group
/// keeps a Ctrl-C in the terminal away from it, so it outlives xtask until `down`.
pub fn spawn_background(cmd: &mut Command, log: &Path, pid_file: &Path) -> Result<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", describe(cmd)))?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("could not write {}", pid_file.display()))?;
    Ok(pid)
}

pub fn parse_pid(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|&pid| pid > 1)
}

pub fn read_pid(pid_file: &Path) -> Option<u32> {
    parse_pid(&std::fs::read_to_string(pid_file).ok()?)
}

/// True while `pid` exists and is not a zombie (children we spawned but did not wait
/// for stay as zombies until xtask exits; they must count as stopped).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(proc_state(&stat), Some('Z' | 'X')),
        Err(_) => false,
    }
}

fn proc_state(stat: &str) -> Option<char> {
    // The command name (2nd field) may contain spaces and parentheses; the state
    // follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// True when the command line of `pid` mentions `marker`, so a recycled pid from a
/// stale pid file is never signalled.
pub fn cmdline_contains(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).contains(marker))
        .unwrap_or(false)
}

/// The pid recorded in `pid_file` if that process is still ours and alive.
pub fn running_from_pid_file(pid_file: &Path, marker: &str) -> Option<u32> {
    read_pid(pid_file).filter(|&pid| is_running(pid) && cmdline_contains(pid, marker))
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub fn terminate(pid: u32, grace: Duration) -> Result<()> {
    let target = Pid::from_raw(i32::try_from(pid)?);
    if signal::kill(target, Signal::SIGTERM).is_err() {
        return Ok(()); // already gone
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_running(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = signal::kill(target, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(pid) {
        if Instant::now() >= deadline {
            bail!("pid {pid} survived SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Stops the process recorded in `pid_file` if it is alive and matches `marker`, and
/// removes the pid file. Returns the pid it stopped.
pub fn stop_from_pid_file(pid_file: &Path, marker: &str, grace: Duration) -> Result<Option<u32>> {
    let stopped = match running_from_pid_file(pid_file, marker) {
        Some(pid) => {
            terminate(pid, grace)?;
            Some(pid)
        }
        None => None,
    };
    match std::fs::remove_file(pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("could not remove {}", pid_file.display()))
        }
        _ => Ok(stopped),
    }
}

/// [`stop_from_pid_file`] with a progress line either way, for `down`.
pub fn stop_and_report(name: &str, pid_file: &Path, marker: &str, grace: Duration) -> Result<()> {
    let stopped = stop_from_pid_file(pid_file, marker, grace)
        .with_context(|| format!("could not stop {name}"))?;
    match stopped {
        Some(pid) => eprintln!("{name}: stopped (pid {pid})"),
        None => eprintln!("{name}: not running"),
    }
    Ok(())
}

/// Current length of a log file, so a readiness check only looks at what a freshly
/// started process wrote.
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// Whether `log` contains `needle` after byte `offset`.
pub fn log_contains_since(log: &Path, offset: u64, needle: &str) -> bool {
    let Ok(mut file) = File::open(log) else {
        return false;
    };
    let mut text = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut text).is_err() {
        return false;
    }
    String::from_utf8_lossy(&text).contains(needle)
}

/// Appends the end of `log` to an error, since the cause is usually only in there.
pub fn with_log_tail<T>(result: Result<T>, log: &Path) -> Result<T> {
    result.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- last lines of {} ---\n{}",
            log.display(),
            tail(log, 30)
        )
    })
}

/// Last `lines` lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let Ok(raw) = std::fs::read(log) else {
        return format!("(no log at {})", log.display());
    };
    let text = String::from_utf8_lossy(&raw);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::{parse_pid, proc_state};

    #[test]
    fn parses_pid_files() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("  42 "), Some(42));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("abc"), None);
        assert_eq!(parse_pid("-5"), None);
        // pid 0/1 would signal our group or init: never trust a file saying so.
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("1"), None);
    }

    #[test]
    fn reads_state_after_command_name() {
        assert_eq!(proc_state("123 (java) S 1 123"), Some('S'));
        assert_eq!(proc_state("9 (we (ird) name) Z 1"), Some('Z'));
        assert_eq!(proc_state("garbage"), None);
    }
}
