//! Local stand-ins for the base images the Dockerfile names and the images docker-compose.yml
//! runs, for machines that cannot reach a container registry. Test stand-ins only, never
//! shipped: each is built only when its tag is missing, and tagged with the exact name the
//! Dockerfile or compose file uses, so both are used unchanged. Their build contexts are
//! under deploy/ci/; docs/deploy.md says how each differs from the image it stands in for.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::daemon::Dockerd;
use crate::paths::Paths;
use crate::{deploy_tools, maven, process};

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

/// The images docker-compose.yml runs that it does not build (`image:` of a service without
/// `build:`; ours are all named `sequence-service/...`).
pub fn compose_images(compose_file: &str) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for line in compose_file.lines() {
        let Some(image) = line.trim().strip_prefix("image:") else {
            continue;
        };
        let image = image.trim().trim_matches(['"', '\'']);
        if !image.starts_with("sequence-service/") && !images.iter().any(|i| i == image) {
            images.push(image.to_owned());
        }
    }
    images
}

/// Mailpit's Go module version built for the `axllent/mailpit` stand-in; the compose file's
/// tag (a minor version, `v1.27`) must name its release line.
const MAILPIT_MODULE: (&str, &str) = ("github.com/axllent/mailpit", "v1.27.11");

/// What stands in for `image`, if we know how to build it.
#[derive(Debug, PartialEq, Eq)]
pub enum StandIn {
    /// `debian:13.x-slim`: Debian trixie's minbase from mmdebstrap, imported.
    DebianTrixie,
    /// `rust:<version>-slim-trixie`: the Debian stand-in plus the host's toolchain.
    Rust { version: String },
    /// `postgres:17...`: Debian trixie's postgresql-17 and an entrypoint of ours.
    Postgres,
    /// `apache/kafka:<version>`: the jars of that version from Maven Central, Debian's Java.
    Kafka { version: String },
    /// `axllent/mailpit:<release line>`: Mailpit built from its Go module.
    Mailpit,
}

fn is_plain_version(version: &str) -> bool {
    version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok())
}

pub fn stand_in_for(image: &str) -> Option<StandIn> {
    if let Some(tag) = image.strip_prefix("debian:13") {
        return tag.ends_with("-slim").then_some(StandIn::DebianTrixie);
    }
    if let Some(tag) = image.strip_prefix("postgres:") {
        // Debian trixie has PostgreSQL 17 only.
        let major = tag.split(['.', '-']).next();
        return (major == Some("17")).then_some(StandIn::Postgres);
    }
    if let Some(version) = image.strip_prefix("apache/kafka:") {
        return is_plain_version(version).then(|| StandIn::Kafka {
            version: version.to_owned(),
        });
    }
    if let Some(tag) = image.strip_prefix("axllent/mailpit:") {
        let line = MAILPIT_MODULE.1.rsplit_once('.').map(|(line, _)| line);
        return (line == Some(tag) || MAILPIT_MODULE.1 == tag).then_some(StandIn::Mailpit);
    }
    let version = image.strip_prefix("rust:")?.strip_suffix("-slim-trixie")?;
    is_plain_version(version).then(|| StandIn::Rust {
        version: version.to_owned(),
    })
}

/// Makes sure every image of `images` exists in the engine, building stand-ins for the
/// missing ones. All but the Debian one are built on the Debian stand-in, `debian` (the name
/// the Dockerfile gives it), which is built first when missing.
pub fn ensure(paths: &Paths, daemon: &Dockerd, images: &[String], debian: &str) -> Result<()> {
    let mut wanted: Vec<(&String, StandIn)> = Vec::new();
    for image in images {
        match stand_in_for(image) {
            Some(stand_in) => wanted.push((image, stand_in)),
            None => bail!("no stand-in is known for the image {image}"),
        }
    }
    for (image, stand_in) in wanted {
        if exists(daemon, image)? {
            eprintln!("stand-in: {image} present");
            continue;
        }
        if stand_in == StandIn::DebianTrixie {
            self::debian(paths, daemon, image)?;
            continue;
        }
        if !exists(daemon, debian)? {
            self::debian(paths, daemon, debian)?;
        }
        let context = paths.local.join("standin-context");
        if context.exists() {
            std::fs::remove_dir_all(&context)?;
        }
        match stand_in {
            StandIn::DebianTrixie => {}
            StandIn::Rust { version } => {
                rust_context(paths, &context, &version)?;
                build(
                    paths,
                    daemon,
                    image,
                    debian,
                    "rust-standin",
                    &context,
                    &[format!("RUST_VERSION={version}")],
                )?;
            }
            StandIn::Postgres => {
                build(
                    paths,
                    daemon,
                    image,
                    debian,
                    "postgres-standin",
                    &context,
                    &[],
                )?;
            }
            StandIn::Kafka { version } => {
                kafka_context(paths, &context, &version)?;
                build(paths, daemon, image, debian, "kafka-standin", &context, &[])?;
            }
            StandIn::Mailpit => {
                std::fs::create_dir_all(&context)?;
                let binary = deploy_tools::go_wrapped_binary(
                    paths,
                    MAILPIT_MODULE.0,
                    MAILPIT_MODULE.1,
                    "mailpit",
                    &format!(
                        "-s -w -X github.com/axllent/mailpit/config.Version={}",
                        MAILPIT_MODULE.1
                    ),
                    &[],
                )?;
                std::fs::copy(&binary, context.join("mailpit"))?;
                build(
                    paths,
                    daemon,
                    image,
                    debian,
                    "mailpit-standin",
                    &context,
                    &[],
                )?;
            }
        }
        let _ = std::fs::remove_dir_all(&context);
    }
    Ok(())
}

/// `docker build`s deploy/ci/`source`/Dockerfile as `image` on `debian`, from `context`: the
/// files of deploy/ci/`source` plus whatever the caller put there.
fn build(
    paths: &Paths,
    daemon: &Dockerd,
    image: &str,
    debian: &str,
    source: &str,
    context: &Path,
    build_args: &[String],
) -> Result<()> {
    eprintln!("stand-in: building {image} (deploy/ci/{source}) on {debian}");
    std::fs::create_dir_all(context)?;
    let source = paths.root.join("deploy/ci").join(source);
    process::run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", source.display()))
            .arg(context),
    )?;
    let mut build = daemon.docker()?;
    build
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "host", "--build-arg"])
        .arg(format!("BASE={debian}"));
    for arg in build_args {
        build.arg("--build-arg").arg(arg);
    }
    build.args(["-t", image]).arg(context);
    process::run(&mut build)
}

/// The jars of Kafka `version`'s broker and tools, into `context`/libs.
fn kafka_context(paths: &Paths, context: &Path, version: &str) -> Result<()> {
    let pom = paths.root.join("deploy/ci/kafka-standin/pom.xml");
    let libs = paths.cache.join(format!("kafka-standin-{version}/libs"));
    if let Some(parent) = libs.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let libs = maven::fetch_once(
        "stand-in",
        "the Kafka broker and tools",
        &libs,
        &paths.log("maven-kafka-standin"),
        |out| {
            vec![
                "-f".to_owned(),
                pom.display().to_string(),
                format!("-Dkafka.version={version}"),
                "dependency:copy-dependencies".to_owned(),
                format!("-DoutputDirectory={}", out.display()),
            ]
        },
    )?;
    let target = context.join("libs");
    std::fs::create_dir_all(&target)?;
    for entry in std::fs::read_dir(&libs)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jar") {
            let name = path.file_name().context("a jar without a name")?;
            std::fs::copy(&path, target.join(name))?;
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

/// The host's toolchain of Rust `version` and extra CA certificates, into `context`.
fn rust_context(_paths: &Paths, context: &Path, version: &str) -> Result<()> {
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
    Ok(())
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

    #[test]
    fn stand_ins_are_known_for_the_compose_services() {
        assert_eq!(
            stand_in_for("postgres:17.6-alpine"),
            Some(StandIn::Postgres)
        );
        assert_eq!(stand_in_for("postgres:17"), Some(StandIn::Postgres));
        assert_eq!(stand_in_for("postgres:16-alpine"), None);
        assert_eq!(
            stand_in_for("apache/kafka:4.1.1"),
            Some(StandIn::Kafka {
                version: "4.1.1".into()
            })
        );
        assert_eq!(stand_in_for("apache/kafka:latest"), None);
        assert_eq!(
            stand_in_for("axllent/mailpit:v1.27"),
            Some(StandIn::Mailpit)
        );
        assert_eq!(stand_in_for("axllent/mailpit:v1.28"), None);
    }

    #[test]
    fn compose_images_are_those_it_does_not_build() {
        let compose = "services:\n  postgres:\n    image: postgres:17.6-alpine\n  api:\n    \
                       build: {}\n    image: sequence-service/api:${SEQ_IMAGE_TAG:-dev}\n  \
                       kafka:\n    image: \"apache/kafka:4.1.1\"\n  migrate:\n    \
                       image: sequence-service/api:${SEQ_IMAGE_TAG:-dev}\n";
        assert_eq!(
            compose_images(compose),
            vec!["postgres:17.6-alpine", "apache/kafka:4.1.1"]
        );
    }
}
