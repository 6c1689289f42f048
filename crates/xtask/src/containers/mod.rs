//! `cargo xtask containers`: every image of deploy/docker/Dockerfile built as a user would
//! build it (`docker build --target <service>`, the Dockerfile unchanged), on a Docker engine
//! of our own with local stand-ins for the base images, then each image checked.
//!
//! Still to come (issue 16): the compose stack (stand-ins for its PostgreSQL, Kafka and
//! Mailpit images, `docker compose up --wait` and the smoke test), the Kubernetes image check,
//! and the call from `.ci/run`.

mod checks;
mod daemon;
mod standins;

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::unistd::geteuid;

use crate::apt;
use crate::paths::Paths;
use crate::process;

/// The Dockerfile's service targets and the image names docker-compose.yml gives them.
pub const SERVICES: &[&str] = &[
    "api",
    "scheduler",
    "sender-worker",
    "tracker",
    "inbox-watcher",
];
/// The tag docker-compose.yml uses when `SEQ_IMAGE_TAG` is unset.
const TAG: &str = "dev";

pub fn run(paths: &Paths) -> Result<()> {
    if !geteuid().is_root() {
        bail!(
            "cargo xtask containers needs root: it installs docker.io and starts its own dockerd"
        );
    }
    if process::find_program("apt-get").is_none() {
        bail!("cargo xtask containers needs apt-get (Debian) to install docker.io and mmdebstrap");
    }
    apt::ensure(
        &["docker.io", "mmdebstrap"],
        "building the container images",
    )?;
    let dockerfile_path = paths.root.join("deploy/docker/Dockerfile");
    let dockerfile = std::fs::read_to_string(&dockerfile_path)
        .with_context(|| format!("reading {}", dockerfile_path.display()))?;

    let daemon = daemon::Dockerd::start(paths)?;
    let result = build_and_check(paths, &daemon, &dockerfile);
    let stopped = daemon.stop();
    let sizes = result?;
    stopped?;
    eprintln!("images:");
    for (image, bytes) in sizes {
        eprintln!("  {image:40} {:>6.1} MB", bytes as f64 / 1e6);
    }
    Ok(())
}

fn build_and_check(
    paths: &Paths,
    daemon: &daemon::Dockerd,
    dockerfile: &str,
) -> Result<Vec<(String, u64)>> {
    standins::ensure(paths, daemon, &standins::base_images(dockerfile))?;
    let mut sizes = Vec::new();
    for service in SERVICES {
        let image = format!("sequence-service/{service}:{TAG}");
        let started = Instant::now();
        eprintln!("build: {image}");
        // The legacy builder of Debian's dockerd 20.10: BuildKit would fetch the
        // `# syntax=` frontend image from a registry.
        let mut build = daemon.docker()?;
        build
            .current_dir(&paths.root)
            .env("DOCKER_BUILDKIT", "0")
            .args([
                "build",
                "--network",
                "host",
                "-f",
                "deploy/docker/Dockerfile",
            ])
            .args(["--target", service, "-t", &image, "."]);
        process::run(&mut build)?;
        eprintln!("build: {image} in {:.0} s", started.elapsed().as_secs_f64());
        sizes.push((image.clone(), checks::check(daemon, service, &image)?));
    }
    Ok(sizes)
}

/// `docker <args>` against `daemon`, its output.
fn docker_output(daemon: &daemon::Dockerd, args: &[&str]) -> Result<String> {
    let mut cmd: Command = daemon.docker()?;
    cmd.args(args);
    process::output(&mut cmd)
}
