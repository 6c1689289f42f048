//! A Docker engine of our own: Debian's dockerd started by hand with its data under the user
//! cache (so image layers and stand-ins survive between runs) and a socket of its own, so it
//! neither needs nor touches a system Docker. No bridge and no iptables: builds and
//! containers use the host's network.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::process;

/// Marks our dockerd in /proc/PID/cmdline, so a stale pid file never stops another process.
const MARKER: &str = "sequence-service/docker";

pub struct Dockerd {
    pid: u32,
    pid_file: PathBuf,
    socket: PathBuf,
    /// The docker client's configuration (DOCKER_CONFIG): its CLI plugins, such as compose,
    /// live here rather than in the user's ~/.docker.
    config: PathBuf,
}

impl Dockerd {
    /// Starts dockerd (or reuses ours if a previous run left it up) and waits until it answers.
    pub fn start(paths: &Paths) -> Result<Self> {
        let dir = paths.cache.join("docker");
        let (data, exec) = (dir.join("data"), dir.join("exec"));
        for d in [&data, &exec] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let socket = dir.join("docker.sock");
        let pid_file = paths.pid_file("dockerd");
        let pid = match process::running_from_pid_file(&pid_file, MARKER) {
            Some(pid) => pid,
            None => {
                let dockerd = process::require_program(
                    "dockerd",
                    "install Debian's docker.io (cargo xtask containers does, as root)",
                )?;
                let mut cmd = Command::new(dockerd);
                cmd.arg("--data-root")
                    .arg(&data)
                    .arg("--exec-root")
                    .arg(&exec)
                    .arg("--pidfile")
                    .arg(dir.join("dockerd.pid"))
                    .arg("-H")
                    .arg(format!("unix://{}", socket.display()))
                    .args([
                        "--storage-driver",
                        "overlay2",
                        "--iptables=false",
                        "--ip6tables=false",
                        "--bridge=none",
                    ]);
                process::spawn_background(&mut cmd, &paths.log("dockerd"), &pid_file)?
            }
        };
        let daemon = Self {
            pid,
            pid_file,
            socket,
            config: dir.join("config"),
        };
        daemon.wait_ready(paths)?;
        Ok(daemon)
    }

    /// A `docker` command talking to this engine.
    pub fn docker(&self) -> Result<Command> {
        let docker = process::require_program("docker", "install Debian's docker.io")?;
        let mut cmd = Command::new(docker);
        cmd.envs(self.client_env());
        Ok(cmd)
    }

    /// The variables that point a docker client (or a script calling one) at this engine.
    pub fn client_env(&self) -> [(&'static str, OsString); 2] {
        [
            ("DOCKER_HOST", self.host().into()),
            ("DOCKER_CONFIG", self.config.clone().into_os_string()),
        ]
    }

    /// Where the docker client of [`Self::docker`] looks for CLI plugins.
    pub fn plugins_dir(&self) -> PathBuf {
        self.config.join("cli-plugins")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn wait_ready(&self, paths: &Paths) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut version = self.docker()?;
            version.args(["version", "--format", "{{.Server.Version}}"]);
            if let Ok(server) = process::output(&mut version) {
                eprintln!("dockerd: {} on {}", server.trim(), self.host());
                return Ok(());
            }
            if !process::is_running(self.pid) {
                bail!(
                    "dockerd exited at startup:\n{}",
                    process::tail(&paths.log("dockerd"), 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "dockerd did not answer within 60 s:\n{}",
                    process::tail(&paths.log("dockerd"), 20)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops the engine by its pid (its containers stop with it).
    pub fn stop(self) -> Result<()> {
        process::stop_from_pid_file(&self.pid_file, MARKER, Duration::from_secs(30))?;
        eprintln!("dockerd: stopped (pid {})", self.pid);
        unmount_leftovers(&self.socket);
        Ok(())
    }
}

/// dockerd leaves its default network namespace (`exec/netns/default`) mounted when it
/// stops; unmount what it left under the directory of `socket`, so nothing of ours stays
/// mounted (and the cache can be deleted).
fn unmount_leftovers(socket: &std::path::Path) {
    let Some(dir) = socket.parent() else { return };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for target in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if std::path::Path::new(target).starts_with(dir)
            && let Err(e) = process::output(Command::new("umount").arg(target))
        {
            eprintln!("dockerd: could not unmount {target}: {e:#}");
        }
    }
}

/// Stops our dockerd if its pid file names a running one.
pub fn stop_leftover(paths: &Paths) -> Result<()> {
    if let Some(pid) =
        process::stop_from_pid_file(&paths.pid_file("dockerd"), MARKER, Duration::from_secs(30))?
    {
        eprintln!("dockerd: stopped (pid {pid})");
        unmount_leftovers(&paths.cache.join("docker/docker.sock"));
    }
    Ok(())
}
