//! `cargo xtask containers`: every image of deploy/docker/Dockerfile built as a user would
//! build it (`docker build --target <service>`, the Dockerfile unchanged), on a Docker engine
//! of our own with local stand-ins for the base images, then each image checked; the prod
//! overlay's images checked against them; and docker-compose.yml run and smoked as README
//! tells a Docker user, on stand-ins for its PostgreSQL, Kafka and Mailpit images.

mod checks;
mod compose;
mod daemon;
mod kubernetes;
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
    "webhooks",
];
/// The tag docker-compose.yml uses when `SEQ_IMAGE_TAG` is unset.
const TAG: &str = "dev";
/// The tag of a release, which the Kubernetes manifests use: the workspace's version.
const RELEASE_TAG: &str = env!("CARGO_PKG_VERSION");
/// The Dockerfile's builder stage, kept as the cache of the next build; never shipped.
const BUILDER_CACHE: &str = "sequence-service-ci/builder:latest";

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
        &["docker.io", "mmdebstrap", "curl", "jq"],
        "building and running the container images",
    )?;
    let read = |relative: &str| {
        let path = paths.root.join(relative);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let dockerfile = read("deploy/docker/Dockerfile")?;
    let compose_file = read("docker-compose.yml")?;

    let started = Instant::now();
    let daemon = daemon::Dockerd::start(paths)?;
    let result = build_check_and_run(paths, &daemon, &dockerfile, &compose_file);
    let stopped = daemon.stop();
    let sizes = result?;
    stopped?;
    eprintln!("images:");
    for (image, bytes) in sizes {
        eprintln!("  {image:40} {:>6.1} MB", bytes as f64 / 1e6);
    }
    eprintln!(
        "containers: passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Stops the Docker engine a run left behind (interrupted), with its containers.
pub fn stop_engine(paths: &Paths) -> Result<()> {
    daemon::stop_leftover(paths)
}

fn build_check_and_run(
    paths: &Paths,
    daemon: &daemon::Dockerd,
    dockerfile: &str,
    compose_file: &str,
) -> Result<Vec<(String, u64)>> {
    let base_images = standins::base_images(dockerfile);
    let debian = base_images
        .iter()
        .find(|i| standins::stand_in_for(i) == Some(standins::StandIn::DebianTrixie))
        .context("the Dockerfile names no debian:13.x-slim base, which the stand-ins build on")?
        .clone();
    standins::ensure(paths, daemon, &base_images, &debian)?;
    let sizes = build_images(paths, daemon)?;

    let mut built = Vec::new();
    for (image, _) in &sizes {
        built.push(image.clone());
        built.push(image.replace(&format!(":{TAG}"), &format!(":{RELEASE_TAG}")));
    }
    kubernetes::check_prod_overlay(paths, &built)?;

    let started = Instant::now();
    compose::install(paths, daemon)?;
    standins::ensure(
        paths,
        daemon,
        &standins::compose_images(compose_file),
        &debian,
    )?;
    compose::smoke(paths, daemon)?;
    eprintln!(
        "compose: stack smoked in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(sizes)
}

/// Builds and checks every service's image, tagged `TAG` and `RELEASE_TAG`; their sizes.
fn build_images(paths: &Paths, daemon: &daemon::Dockerd) -> Result<Vec<(String, u64)>> {
    // The builder stage first, tagged: its layers (the compiled dependencies above all) are
    // the cache of the next build, and a tag keeps `image prune` off them.
    build_target(paths, daemon, "builder", BUILDER_CACHE)?;
    let mut sizes = Vec::new();
    for service in SERVICES {
        let image = format!("sequence-service/{service}:{TAG}");
        build_target(paths, daemon, service, &image)?;
        let release = format!("sequence-service/{service}:{RELEASE_TAG}");
        docker_output(daemon, &["tag", &image, &release])?;
        eprintln!("build: {image} also tagged {release}");
        sizes.push((image.clone(), checks::check(daemon, service, &image)?));
    }
    // Each source change leaves the previous builder stage behind, untagged: about 3 GB of
    // compiled workspace.
    let pruned = docker_output(daemon, &["image", "prune", "--force"])?;
    if let Some(total) = pruned.lines().find(|l| l.starts_with("Total reclaimed")) {
        eprintln!("build: earlier builds pruned: {total}");
    }
    Ok(sizes)
}

/// `docker build --target <target>` of deploy/docker/Dockerfile, as a user would run it.
fn build_target(paths: &Paths, daemon: &daemon::Dockerd, target: &str, tag: &str) -> Result<()> {
    let started = Instant::now();
    eprintln!("build: {tag}");
    // The legacy builder of Debian's dockerd 20.10: BuildKit would fetch the `# syntax=`
    // frontend image from a registry.
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
        .args(["--target", target, "-t", tag, "."]);
    process::run(&mut build)?;
    eprintln!("build: {tag} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `docker <args>` against `daemon`, its output.
fn docker_output(daemon: &daemon::Dockerd, args: &[&str]) -> Result<String> {
    let mut cmd: Command = daemon.docker()?;
    cmd.args(args);
    process::output(&mut cmd)
}
