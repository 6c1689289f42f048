//! The compose stack, run as README tells a Docker user: compose v2's CLI (built from its Go
//! module, installed as the docker client's plugin so `docker compose` works as typed), a
//! `.env` of freshly generated secrets, then deploy/ci/compose-smoke.sh.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine;

use super::daemon::Dockerd;
use crate::paths::Paths;
use crate::{deploy_tools, process};

/// Compose's Go module; newer releases need a newer Go than the machines have.
const COMPOSE_MODULE: (&str, &str) = ("github.com/docker/compose/v5", "v5.6.0");

/// Installs `docker compose` for `daemon`'s client, building it once.
pub fn install(paths: &Paths, daemon: &Dockerd) -> Result<()> {
    let (module, version) = COMPOSE_MODULE;
    let binary = deploy_tools::go_wrapped_binary(
        paths,
        &format!("{module}/cmd"),
        version,
        "docker-compose",
        &format!("-s -w -X {module}/internal.Version={version}"),
        &[],
    )?;
    let plugins = daemon.plugins_dir();
    std::fs::create_dir_all(&plugins)?;
    let plugin = plugins.join("docker-compose");
    std::fs::copy(&binary, &plugin).with_context(|| format!("installing {}", plugin.display()))?;
    let mut compose_version = daemon.docker()?;
    compose_version.args(["compose", "version"]);
    eprintln!("compose: {}", process::output(&mut compose_version)?.trim());
    Ok(())
}

/// Starts the stack, smokes it and removes it (deploy/ci/compose-smoke.sh).
pub fn smoke(paths: &Paths, daemon: &Dockerd) -> Result<()> {
    let env_file = write_env_file(paths)?;
    let script = paths.root.join("deploy/ci/compose-smoke.sh");
    let bash = process::require_program("bash", "install bash")?;
    process::run(
        std::process::Command::new(bash)
            .envs(daemon.client_env())
            .arg(&script)
            .arg(&env_file)
            .current_dir(&paths.root),
    )
}

/// A `.env` as `just compose-up` writes one, with new secrets each run, in a directory of its
/// own (README's example reads `.env` from the working directory).
fn write_env_file(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.local.join("compose");
    std::fs::create_dir_all(&dir)?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let admin: String = random_bytes::<24>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let contents = format!(
        "SEQ_ENCRYPTION_KEYS=1:{}\nSEQ_TRACKING_KEYS={}\nSEQ_ADMIN_TOKEN={admin}\n",
        base64.encode(random_bytes::<32>()?),
        base64.encode(random_bytes::<32>()?),
    );
    let path = dir.join(".env");
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes)
}
