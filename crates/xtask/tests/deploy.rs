//! The deployment files, checked on every test run without Docker: the Dockerfile (hadolint,
//! and the rules hadolint cannot know: an unprivileged user, pinned bases, each image's
//! binary being the service's own) and docker-compose.yml (parses, runs every service the
//! README lists, scales the sender worker and webhooks, commits no secret, allows no private
//! address but Mailpit's).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The images: one per service binary, each the Dockerfile stage of that name.
const IMAGES: [&str; 6] = [
    "api",
    "scheduler",
    "sender-worker",
    "tracker",
    "inbox-watcher",
    "webhooks",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> anyhow::Result<String> {
    let path = root().join(relative);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The workspace's binaries (cargo metadata targets of kind `bin`), xtask's aside.
fn workspace_binaries() -> anyhow::Result<BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut binaries = BTreeSet::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        if package["name"] == "xtask" {
            continue;
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
            if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                binaries.insert(name.to_owned());
            }
        }
    }
    Ok(binaries)
}

/// One `FROM` stage of the Dockerfile: its base, name and instructions (continuations
/// joined, comments dropped).
#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<String>,
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    logical.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in logical {
        let words: Vec<&str> = instruction.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("AS") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage {
                base: words.get(1).map(|w| (*w).to_owned()).unwrap_or_default(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        }
    }
    stages
}

#[test]
fn every_image_runs_its_own_binary_as_an_unprivileged_user() -> anyhow::Result<()> {
    let stages = stages(&read("deploy/docker/Dockerfile")?);
    let binaries = workspace_binaries()?;
    let expected: BTreeSet<String> = IMAGES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        binaries, expected,
        "every service binary needs an image (and IMAGES a binary)"
    );
    for image in IMAGES {
        let stage = stages
            .iter()
            .find(|s| s.name.as_deref() == Some(image))
            .ok_or_else(|| anyhow::anyhow!("the Dockerfile has no `{image}` stage"))?;
        let has = |instruction: &str| stage.instructions.iter().any(|i| i == instruction);
        let copy =
            format!("COPY --from=builder /build/target/release/{image} /usr/local/bin/{image}");
        assert!(
            has(&copy),
            "{image}: expected `{copy}` in {:?}",
            stage.instructions
        );
        let entrypoint = format!("ENTRYPOINT [\"/usr/local/bin/{image}\"]");
        assert!(has(&entrypoint), "{image}: expected `{entrypoint}`");
        // Only the binary: one COPY, nothing else from the build.
        let copies = stage
            .instructions
            .iter()
            .filter(|i| i.starts_with("COPY"))
            .count();
        assert_eq!(copies, 1, "{image}: {:?}", stage.instructions);
        let user = stage
            .instructions
            .iter()
            .rev()
            .find_map(|i| i.strip_prefix("USER "))
            .ok_or_else(|| anyhow::anyhow!("{image}: no USER, so it would run as root"))?;
        let uid = user.split(':').next().unwrap_or_default();
        assert!(
            !matches!(uid, "0" | "root"),
            "{image}: runs as `{user}`, which is root"
        );
    }
    Ok(())
}

#[test]
fn every_base_image_is_pinned_to_a_version() {
    let stages = stages(&read("deploy/docker/Dockerfile").unwrap_or_default());
    assert!(!stages.is_empty(), "no stages found in the Dockerfile");
    let names: BTreeSet<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
    for stage in &stages {
        if names.contains(stage.base.as_str()) {
            continue;
        }
        let tag = stage
            .base
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or("");
        assert!(
            tag != "latest" && tag.chars().any(|c| c.is_ascii_digit())
                || stage.base.contains("@sha256:"),
            "base image `{}` is not pinned to a version",
            stage.base
        );
    }
}

#[test]
fn the_dockerfile_passes_hadolint() -> anyhow::Result<()> {
    let hadolint = std::env::var("SEQ_TEST_HADOLINT").map_err(|_| {
        anyhow::anyhow!("SEQ_TEST_HADOLINT is not set; run `cargo xtask test`, which installs it")
    })?;
    let output = Command::new(hadolint)
        .args([
            "--no-color",
            "--config",
            "deploy/docker/hadolint.yaml",
            "deploy/docker/Dockerfile",
        ])
        .current_dir(root())
        .output()?;
    assert!(
        output.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// docker-compose.yml's services, with YAML merge keys (`<<: *service`) applied.
fn compose_services() -> anyhow::Result<BTreeMap<String, serde_yaml::Value>> {
    let mut document: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")?)?;
    document.apply_merge()?;
    let services = document
        .get("services")
        .and_then(|s| s.as_mapping())
        .ok_or_else(|| anyhow::anyhow!("docker-compose.yml has no services"))?;
    let mut by_name = BTreeMap::new();
    for (name, service) in services {
        let mut service = service.clone();
        service.apply_merge()?;
        let name = name
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("a service name is not a string"))?;
        by_name.insert(name.to_owned(), service);
    }
    Ok(by_name)
}

/// The services README.md's "Running with Docker" table names (first column, backticked).
fn readme_compose_services() -> anyhow::Result<BTreeSet<String>> {
    let readme = read("README.md")?;
    let section = readme
        .split("\n## Running with Docker")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .ok_or_else(|| anyhow::anyhow!("README.md has no `## Running with Docker` section"))?;
    Ok(section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect())
}

#[test]
fn compose_runs_what_the_readme_lists_and_scales_the_workers() -> anyhow::Result<()> {
    let services = compose_services()?;
    let names: BTreeSet<String> = services.keys().cloned().collect();
    assert_eq!(names, readme_compose_services()?);

    for image in IMAGES {
        let service = services
            .get(image)
            .ok_or_else(|| anyhow::anyhow!("compose has no `{image}` service"))?;
        let build = &service["build"];
        assert_eq!(
            build["dockerfile"].as_str(),
            Some("deploy/docker/Dockerfile")
        );
        assert_eq!(
            build["target"].as_str(),
            Some(image),
            "{image} builds another image"
        );
        let env = &service["environment"];
        for key in [
            "DATABASE_URL",
            "KAFKA_BROKERS",
            "SEQ_SECURITY__ENCRYPTION_KEYS",
        ] {
            assert!(env.get(key).is_some(), "{image} lacks {key}");
        }
    }
    assert_eq!(services["migrate"]["build"]["target"].as_str(), Some("api"));
    let migrate: Vec<&str> = services["migrate"]["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(migrate, ["migrate", "up"]);
    let api_ports = services["api"]["ports"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert!(
        api_ports
            .iter()
            .any(|p| p.as_str() == Some("127.0.0.1:8080:8080")),
        "{api_ports:?}"
    );
    // Published on the host's loopback only: the stack's PostgreSQL trusts every connection.
    for (name, service) in &services {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap_or_default();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond loopback"
            );
        }
    }
    // Several replicas cannot share a host port or a container name.
    for scaled in ["sender-worker", "webhooks"] {
        let service = &services[scaled];
        assert!(
            service.get("ports").is_none() && service.get("container_name").is_none(),
            "{scaled} cannot scale"
        );
    }
    Ok(())
}

#[test]
fn compose_commits_no_secret() -> anyhow::Result<()> {
    for (name, service) in compose_services()? {
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        for (key, value) in env {
            let key = key.as_str().unwrap_or_default();
            let secret = ["KEYS", "TOKEN", "PASSWORD", "SECRET"]
                .iter()
                .any(|word| key.contains(word));
            if secret {
                let value = value.as_str().unwrap_or_default();
                assert!(
                    value.starts_with("${") && value.ends_with('}'),
                    "{name}: {key} must come from the environment (.env), not the file"
                );
            }
        }
    }
    Ok(())
}

/// The services connecting to mailboxes' servers reach Mailpit, and it is the only private
/// address they allow: it sits alone at a fixed address on the `mail` network, so the name
/// `mailpit` resolves to that address only.
#[test]
fn compose_allows_mailpit_and_no_other_private_address() -> anyhow::Result<()> {
    let services = compose_services()?;
    let mailpit = services
        .get("mailpit")
        .ok_or_else(|| anyhow::anyhow!("compose has no mailpit"))?;
    let networks = mailpit["networks"]
        .as_mapping()
        .ok_or_else(|| anyhow::anyhow!("mailpit lists no networks"))?;
    assert_eq!(networks.len(), 1, "mailpit is on the mail network only");
    let address = mailpit["networks"]["mail"]["ipv4_address"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("mailpit has no fixed address"))?;
    let expected = format!("[\"{address}/32\"]");
    for image in IMAGES {
        let allowed = services[image]["environment"]["SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(allowed, expected, "{image}");
    }
    for image in ["api", "sender-worker", "inbox-watcher"] {
        let networks: Vec<&str> = services[image]["networks"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .collect();
        assert_eq!(networks, ["default", "mail"], "{image}");
    }
    Ok(())
}
