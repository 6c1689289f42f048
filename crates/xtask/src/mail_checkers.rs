//! Independent judges of the emails the platform sends, for the tests that use them: Python's
//! dkimpy verifies DKIM signatures (sender-worker), Apache SpamAssassin scores whole emails
//! (e2e). Both are Debian packages, installed when missing like `postfix` for smtp-sink, and
//! reach the tests through `SEQ_TEST_*` variables.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::{apt, process};

/// Debian's own Python, which `python3-dkim` installs dkimpy for (a Python earlier on PATH,
/// such as a pyenv one, does not see it).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Where Debian's `spamassassin` package puts the command-line scanner.
const SPAMASSASSIN: &str = "/usr/bin/spamassassin";

/// A Python 3 that can `import dkim, nacl` (dkimpy, with PyNaCl for Ed25519), for
/// `SEQ_TEST_PYTHON_DKIM`.
pub fn python_dkim() -> Result<String> {
    apt::ensure(
        &["python3-dkim", "python3-nacl"],
        "the sender-worker test that verifies DKIM signatures with dkimpy",
    )?;
    let python = if Path::new(DEBIAN_PYTHON).is_file() {
        DEBIAN_PYTHON.to_owned()
    } else {
        process::require_program("python3", "install Python 3 with dkimpy and PyNaCl")?
            .display()
            .to_string()
    };
    let imports = Command::new(&python)
        .args(["-c", "import dkim, nacl.signing"])
        .output();
    match imports {
        Ok(out) if out.status.success() => Ok(python),
        _ => bail!(
            "{python} cannot import dkim and nacl: install dkimpy and PyNaCl for it \
             (Debian: apt-get install python3-dkim python3-nacl)"
        ),
    }
}

/// Apache SpamAssassin's `spamassassin`, for `SEQ_TEST_SPAMASSASSIN`.
pub fn spamassassin() -> Result<String> {
    apt::ensure(
        &["spamassassin"],
        "the e2e test that scores sent emails with SpamAssassin",
    )?;
    if Path::new(SPAMASSASSIN).is_file() {
        return Ok(SPAMASSASSIN.to_owned());
    }
    // Not Debian-like (no dpkg): wherever the system's package manager put it.
    process::require_program("spamassassin", "install Apache SpamAssassin")
        .map(|path| path.display().to_string())
}
