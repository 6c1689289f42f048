//! The independent judge of the webhooks the platform signs: the Standard Webhooks
//! specification's own Python library (`standardwebhooks` from PyPI), in a virtualenv of the
//! user cache made once, reaching the tests as `SEQ_TEST_PYTHON_STANDARDWEBHOOKS`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::paths::Paths;
use crate::process;

/// The library's version: the tests' expectations were checked against it.
const STANDARDWEBHOOKS: &str = "1.3.0";

/// A Python that can `import standardwebhooks`.
pub fn python(paths: &Paths) -> Result<PathBuf> {
    let venv = paths
        .cache
        .join(format!("standardwebhooks-{STANDARDWEBHOOKS}"));
    let python = venv.join("bin/python");
    if imports(&python) {
        return Ok(python);
    }
    let system = process::require_program("python3", "install Python 3 with venv and pip")?;
    eprintln!(
        "webhooks: installing standardwebhooks {STANDARDWEBHOOKS} from PyPI into {}",
        venv.display()
    );
    process::run(Command::new(system).arg("-m").arg("venv").arg(&venv))?;
    process::run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("standardwebhooks=={STANDARDWEBHOOKS}"),
    ]))?;
    if !imports(&python) {
        bail!(
            "{} cannot import standardwebhooks after pip",
            python.display()
        );
    }
    Ok(python)
}

fn imports(python: &std::path::Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", "import standardwebhooks"])
            .output()
            .is_ok_and(|out| out.status.success())
}
