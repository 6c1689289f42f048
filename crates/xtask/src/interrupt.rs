//! Ctrl-C (and SIGTERM/SIGHUP) turn into a flag so xtask can stop what it started
//! instead of dying half-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn install() -> Result<()> {
    ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst))
        .context("could not install the Ctrl-C handler")
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Error once Ctrl-C was pressed, to stop between long steps.
pub fn check() -> Result<()> {
    if requested() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Blocks until Ctrl-C, or until `still_fine` reports a problem (returned as the error).
pub fn wait(mut still_fine: impl FnMut() -> Result<()>) -> Result<()> {
    while !requested() {
        still_fine()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
