//! Local stand-ins for the base images the Dockerfile names, for machines that cannot reach
//! a container registry. Test stand-ins only, never shipped: each is built only when its tag
//! is missing, and tagged with the exact name the Dockerfile uses, so the Dockerfile builds
//! unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::daemon::Dockerd;
use crate::paths::Paths;
use crate::process;

/// The base images of `dockerfile`, in order of appearance (`FROM image [AS stage]`, stages
/// of the file itself left out).
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let words: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(image) = words.first() else { continue };
        if !stages.iter().any(|s| s == image) && !images.iter().any(|i| i == image) {
            images.push((*image).to_owned());
        }
        if let [_, alias, stage] = words.as_slice()
            && alias.eq_ignore_ascii_case("AS")
        {
            stages.push((*stage).to_owned());
        }
    }
    images
}

/// What stands in for `image`, if we know how to build it.
#[derive(Debug, PartialEq, Eq)]
pub enum StandIn {
    /// `debian:13.x-slim`: Debian trixie's minbase from mmdebstrap, imported.
    DebianTrixie,
    /// `rust:<version>-slim-trixie`: the Debian stand-in plus the host's toolchain.
    Rust { version: String },
}

pub fn stand_in_for(image: &str) -> Option<StandIn> {
    if let Some(tag) = image.strip_prefix("debian:13") {
        return tag.ends_with("-slim").then_some(StandIn::DebianTrixie);
    }
    let version = image.strip_prefix("rust:")?.strip_suffix("-slim-trixie")?;
    let plain =
        version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok());
    plain.then(|| StandIn::Rust {
        version: version.to_owned(),
    })
}

/// Makes sure every base image of the Dockerfile exists in the engine, building stand-ins
/// for the missing ones (the Debian one first: the Rust one is built on it).
pub fn ensure(paths: &Paths, daemon: &Dockerd, images: &[String]) -> Result<()> {
    let mut ordered: Vec<(&String, StandIn)> = Vec::new();
    for image in images {
        match stand_in_for(image) {
            Some(stand_in) => ordered.push((image, stand_in)),
            None => bail!("no stand-in is known for the base image {image}"),
        }
    }
    ordered.sort_by_key(|(_, s)| matches!(s, StandIn::Rust { .. }));
    for (image, stand_in) in ordered {
        if exists(daemon, image)? {
            eprintln!("stand-in: {image} present");
            continue;
        }
        match stand_in {
            StandIn::DebianTrixie => debian(paths, daemon, image)?,
            StandIn::Rust { version } => {
                let debian = images
                    .iter()
                    .find(|i| stand_in_for(i) == Some(StandIn::DebianTrixie))
                    .context("the Rust stand-in is built on the Debian one, which the Dockerfile does not name")?;
                if !exists(daemon, debian)? {
                    self::debian(paths, daemon, debian)?;
                }
                rust(paths, daemon, image, debian, &version)?;
            }
        }
    }
    Ok(())
}

pub fn exists(daemon: &Dockerd, image: &str) -> Result<bool> {
    let mut inspect = daemon.docker()?;
    inspect
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Ok(inspect
        .status()
        .context("running docker image inspect")?
        .success())
}

/// What makes Docker's official `-slim` images slim, kept in the image's dpkg and apt
/// configuration as theirs are: no documentation, manual pages or translations installed, and
/// apt keeping neither its package caches nor downloaded archives (without this, one
/// `apt-get update` in an image adds about 100 MB of `/var/cache/apt/*.bin`).
const SLIM_OPTIONS: &[(&str, &str)] = &[
    ("dpkgopt", "path-exclude=/usr/share/doc/*"),
    ("dpkgopt", "path-include=/usr/share/doc/*/copyright"),
    ("dpkgopt", "path-exclude=/usr/share/man/*"),
    ("dpkgopt", "path-exclude=/usr/share/info/*"),
    ("dpkgopt", "path-exclude=/usr/share/locale/*"),
    ("dpkgopt", "path-include=/usr/share/locale/locale.alias"),
    ("aptopt", "Dir::Cache::pkgcache \"\";"),
    ("aptopt", "Dir::Cache::srcpkgcache \"\";"),
    ("aptopt", "Acquire::Languages \"none\";"),
    (
        "aptopt",
        "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };",
    ),
];

fn debian(paths: &Paths, daemon: &Dockerd, image: &str) -> Result<()> {
    eprintln!("stand-in: building {image} (mmdebstrap --variant=minbase trixie)");
    let tar = paths.local.join("debian-trixie-minbase.tar");
    let mmdebstrap = process::require_program("mmdebstrap", "install Debian's mmdebstrap")?;
    process::run(
        Command::new(mmdebstrap)
            .args(["--variant=minbase", "--quiet"])
            .args(
                SLIM_OPTIONS
                    .iter()
                    .map(|(flag, value)| format!("--{flag}={value}")),
            )
            .arg("trixie")
            .arg(&tar),
    )?;
    let mut import = daemon.docker()?;
    import
        .args(["import", "--change", "CMD [\"bash\"]"])
        .arg(&tar)
        .arg(image);
    let imported = process::output(&mut import);
    let _ = std::fs::remove_file(&tar);
    imported.map(|_| ())
}

fn rust(paths: &Paths, daemon: &Dockerd, image: &str, debian: &str, version: &str) -> Result<()> {
    eprintln!("stand-in: building {image} (the host's Rust {version} on {debian})");
    let context = paths.local.join("rust-standin");
    if context.exists() {
        std::fs::remove_dir_all(&context)?;
    }
    let certs = context.join("certs");
    std::fs::create_dir_all(&certs)?;
    // The host's extra CAs (a proxy's, say): cargo inside the build fetches crates through
    // the same network as the host.
    if let Ok(entries) = std::fs::read_dir("/usr/local/share/ca-certificates") {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                std::fs::copy(&path, certs.join(entry.file_name()))?;
            }
        }
    }
    let sysroot = toolchain(version)?;
    let toolchain = context.join("toolchain");
    std::fs::create_dir_all(&toolchain)?;
    // Everything but the documentation (share/doc is most of a toolchain's size).
    for part in ["bin", "lib", "libexec", "etc"] {
        let from = sysroot.join(part);
        if from.exists() {
            process::run(Command::new("cp").arg("-a").arg(&from).arg(&toolchain))?;
        }
    }
    let dockerfile = paths.root.join("deploy/ci/rust-standin/Dockerfile");
    let mut build = daemon.docker()?;
    build
        .args(["build", "--network", "host", "--build-arg"])
        .arg(format!("RUST_VERSION={version}"))
        .arg("-f")
        .arg(&dockerfile)
        .args(["-t", image])
        .arg(&context);
    let built = process::run(&mut build);
    let _ = std::fs::remove_dir_all(&context);
    built
}

/// The host's sysroot of Rust `version`, installed with rustup (minimal profile) if missing.
fn toolchain(version: &str) -> Result<PathBuf> {
    let sysroot = |v: &str| -> Result<PathBuf> {
        let out = process::output(
            Command::new("rustc")
                .arg(format!("+{v}"))
                .args(["--print", "sysroot"]),
        )?;
        Ok(PathBuf::from(out.trim()))
    };
    if let Ok(path) = sysroot(version)
        && Path::new(&path).join("bin/cargo").exists()
    {
        return Ok(path);
    }
    process::run(Command::new("rustup").args([
        "toolchain",
        "install",
        version,
        "--profile",
        "minimal",
    ]))?;
    sysroot(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_are_the_from_lines_that_are_not_stages() {
        let dockerfile = "# syntax=docker/dockerfile:1\nFROM rust:1.95.0-slim-trixie AS chef\n\
                          RUN true\nFROM chef AS planner\nFROM --platform=$BUILDPLATFORM chef AS builder\n\
                          FROM debian:13.1-slim AS runtime\nFROM runtime AS api\n";
        assert_eq!(
            base_images(dockerfile),
            vec!["rust:1.95.0-slim-trixie", "debian:13.1-slim"]
        );
    }

    #[test]
    fn stand_ins_are_known_for_debian_trixie_slim_and_rust_on_it() {
        assert_eq!(
            stand_in_for("debian:13.1-slim"),
            Some(StandIn::DebianTrixie)
        );
        assert_eq!(
            stand_in_for("rust:1.95.0-slim-trixie"),
            Some(StandIn::Rust {
                version: "1.95.0".into()
            })
        );
        assert_eq!(stand_in_for("rust:latest-slim-trixie"), None);
        assert_eq!(stand_in_for("debian:12-slim"), None);
        assert_eq!(stand_in_for("alpine:3"), None);
    }
}
