//! What every runtime image must be: its one binary running as an unprivileged user, CA
//! certificates for TLS to mail servers, nothing of the repository or its secrets, and small.

use anyhow::{Context, Result, bail};

use super::daemon::Dockerd;
use super::docker_output;

/// Budget of each runtime image (issue 16).
pub const MAX_IMAGE_BYTES: u64 = 150_000_000;

/// Checks `image` of `service`; returns its size in bytes.
pub fn check(daemon: &Dockerd, service: &str, image: &str) -> Result<u64> {
    let inspect = docker_output(
        daemon,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}|{{json .Config.Entrypoint}}|{{.Size}}",
            image,
        ],
    )?;
    let (user, entrypoint, size) = parse_inspect(&inspect)
        .with_context(|| format!("unexpected `docker image inspect` of {image}: {inspect}"))?;
    if !is_unprivileged(&user) {
        bail!("{image} runs as `{user}`, not an unprivileged user");
    }
    let binary = format!("/usr/local/bin/{service}");
    if entrypoint != [binary.as_str()] {
        bail!("{image}'s entrypoint is {entrypoint:?}, expected [{binary}]");
    }
    if size > MAX_IMAGE_BYTES {
        bail!("{image} is {size} bytes, over the budget of {MAX_IMAGE_BYTES}");
    }
    let version = docker_output(
        daemon,
        &["run", "--rm", "--network", "host", image, "--version"],
    )?;
    if !version.contains(service) {
        bail!("`{image} --version` printed {version:?}");
    }
    docker_output(
        daemon,
        &["run", "--rm", "--network", "host", image, "--help"],
    )?;
    // The whole filesystem of the image, as `docker export` writes it.
    let listing = docker_output(
        daemon,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            // As root: the service's user cannot read /etc/ssl/private, and nothing may
            // hide there either.
            "--user",
            "0:0",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "test -s /etc/ssl/certs/ca-certificates.crt && \
             find / -xdev \\( -name .git -o -name .env -o -name '*.key' -o -name 'id_*' \
                  -o -name Cargo.toml -o -name recipe.json \\) -print",
        ],
    )
    .with_context(|| {
        format!("{image} lacks /etc/ssl/certs/ca-certificates.crt, or has no shell")
    })?;
    let found: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
    if !found.is_empty() {
        bail!("{image} carries files of the repository or secrets: {found:?}");
    }
    eprintln!(
        "check: {image}: user {user}, {}, {:.1} MB",
        version.trim(),
        size as f64 / 1e6
    );
    Ok(size)
}

fn parse_inspect(text: &str) -> Option<(String, Vec<String>, u64)> {
    let mut parts = text.trim().splitn(3, '|');
    let user = parts.next()?.to_owned();
    let entrypoint: Vec<String> = serde_json::from_str(parts.next()?).ok()?;
    let size = parts.next()?.trim().parse().ok()?;
    Some((user, entrypoint, size))
}

/// A user that is set and is neither root by name nor uid 0.
fn is_unprivileged(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default();
    !name.is_empty() && name != "root" && name != "0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_output_is_read_as_user_entrypoint_and_size() {
        assert_eq!(
            parse_inspect("10001:10001|[\"/usr/local/bin/api\"]|84123456\n"),
            Some((
                "10001:10001".to_owned(),
                vec!["/usr/local/bin/api".to_owned()],
                84_123_456
            ))
        );
        assert_eq!(parse_inspect("garbage"), None);
    }

    #[test]
    fn root_and_unset_users_are_privileged() {
        assert!(is_unprivileged("10001:10001"));
        assert!(is_unprivileged("sequence"));
        assert!(!is_unprivileged(""));
        assert!(!is_unprivileged("root"));
        assert!(!is_unprivileged("0:0"));
    }
}
