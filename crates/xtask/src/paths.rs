//! Where local state, logs, pid files and download caches live.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub struct Paths {
    /// Workspace root (the directory holding the top-level Cargo.toml).
    pub root: PathBuf,
    /// `<root>/target/local`: data directories and generated configs. Fixed under the
    /// workspace rather than CARGO_TARGET_DIR so `down` finds what `up` started.
    pub local: PathBuf,
    pub logs: PathBuf,
    pub run: PathBuf,
    /// Downloaded jars, outside the clone so fresh clones and CI reruns skip the download.
    pub cache: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Self> {
        // The xtask manifest sits at <root>/crates/xtask, whatever the caller's cwd is.
        // `cargo run` names it at run time; the compile-time value is only a fallback, since
        // cargo's fingerprints do not depend on a clone's path: a binary another clone built
        // into a shared CARGO_TARGET_DIR can be reused here, and would act on that clone.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .ancestors()
            .nth(2)
            .context("xtask is expected at <workspace>/crates/xtask")?
            .to_path_buf();
        let local = root.join("target").join("local");
        Ok(Self {
            logs: local.join("logs"),
            run: local.join("run"),
            local,
            cache: cache_dir()?,
            root,
        })
    }

    pub fn create_dirs(&self) -> Result<()> {
        for dir in [&self.local, &self.logs, &self.run, &self.cache] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        Ok(())
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.pid"))
    }

    pub fn xtask_asset(&self, relative: &str) -> PathBuf {
        self.root
            .join("crates")
            .join("xtask")
            .join("assets")
            .join(relative)
    }
}

fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => {
                bail!("neither XDG_CACHE_HOME nor HOME is set: set one so downloads can be cached")
            }
        },
    };
    Ok(base.join("sequence-service"))
}
