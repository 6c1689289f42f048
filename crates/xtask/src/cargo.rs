//! Invoking cargo for the rest of the workspace.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::paths::Paths;
use crate::process;

/// The cargo that launched xtask (set by `cargo run`), so toolchain overrides hold.
pub fn command(paths: &Paths) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.root);
    cmd
}

/// The workspace target directory as cargo resolves it (CARGO_TARGET_DIR, config files).
pub fn target_directory(paths: &Paths) -> Result<PathBuf> {
    let mut cmd = command(paths);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    let json = process::output(&mut cmd)?;
    let metadata: serde_json::Value =
        serde_json::from_str(&json).context("cargo metadata printed invalid JSON")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}
