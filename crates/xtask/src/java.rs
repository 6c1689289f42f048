//! Locating a Java runtime new enough for Kafka 4 and GreenMail 2.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process;

const MIN_MAJOR: u32 = 17;
const FIX: &str = "install OpenJDK 17 (apt-get install openjdk-17-jre-headless)";

pub fn require() -> Result<PathBuf> {
    let java = process::require_program("java", FIX)?;
    // `java -version` writes to stderr.
    let out = Command::new(&java)
        .arg("-version")
        .output()
        .with_context(|| format!("could not run {}", java.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    match parse_major(&text) {
        Some(major) if major >= MIN_MAJOR => Ok(java),
        Some(major) => bail!("java {major} is too old (Kafka 4 needs {MIN_MAJOR}+): {FIX}"),
        None => bail!("could not read the version of {}: {FIX}", java.display()),
    }
}

/// Major version from `java -version` output: `"17.0.15"` gives 17, legacy `"1.8.0_392"` 8.
fn parse_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn parses_java_versions() {
        assert_eq!(
            parse_major(r#"openjdk version "17.0.15" 2025-04-15"#),
            Some(17)
        );
        assert_eq!(parse_major(r#"java version "1.8.0_392""#), Some(8));
        assert_eq!(parse_major(r#"openjdk version "21" 2023-09-19"#), Some(21));
        assert_eq!(
            parse_major(r#"openjdk version "25-ea" 2025-09-16"#),
            Some(25)
        );
        assert_eq!(parse_major("command not found"), None);
    }
}
