//! Debian packages the project needs: checked with dpkg-query, installed with apt-get when
//! running as root, otherwise named in one line with the command that installs them.

use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::unistd::geteuid;

use crate::process;

/// librdkafka is built from its bundled sources (rdkafka's `cmake-build`); those sources
/// include curl and zlib headers even with curl disabled.
pub const BUILD_PACKAGES: &[&str] = &["cmake", "g++", "make", "libcurl4-openssl-dev", "zlib1g-dev"];

/// Makes sure the packages needed to build the workspace are present.
pub fn ensure_build_packages() -> Result<()> {
    ensure(BUILD_PACKAGES, "building librdkafka")
}

/// Installs whichever of `packages` is missing (root), or fails naming them (not root).
/// Without dpkg (not Debian-like) it trusts the system and lets the build say what is missing.
pub fn ensure(packages: &[&str], purpose: &str) -> Result<()> {
    if process::find_program("dpkg-query").is_none() {
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !geteuid().is_root() {
        bail!(
            "missing Debian packages for {purpose}: {0}; install them with: sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    install(&missing)
}

/// `apt-get install -y`, refreshing the package lists once if the first try fails.
pub fn install(packages: &[&str]) -> Result<()> {
    eprintln!("apt: installing {}", packages.join(" "));
    let run_install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        process::run(&mut cmd)
    };
    if run_install().is_err() {
        // Fresh containers often ship without package lists.
        process::run(Command::new("apt-get").args(["update", "-q"]))?;
        run_install().with_context(|| format!("apt-get install {} failed", packages.join(" ")))?;
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}
