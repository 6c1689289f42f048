//! The architecture's layering, checked on every test run: service crates depend on
//! `domain` and never on each other; `domain` depends on no service; nothing depends on xtask.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const SERVICES: [&str; 4] = ["api", "scheduler", "sender-worker", "tracker"];

/// Workspace member -> the workspace members it depends on (any kind: normal, dev, build).
fn workspace_edges() -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no packages in cargo metadata"))?;
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    Ok(packages
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?.to_owned();
            let deps = p["dependencies"]
                .as_array()?
                .iter()
                .filter_map(|d| d["name"].as_str())
                .filter(|d| members.contains(*d))
                .map(str::to_owned)
                .collect();
            Some((name, deps))
        })
        .collect())
}

#[test]
fn services_depend_on_domain_only() -> anyhow::Result<()> {
    let edges = workspace_edges()?;
    for service in SERVICES {
        let deps = edges
            .get(service)
            .ok_or_else(|| anyhow::anyhow!("{service} is not a workspace member"))?;
        let expected: BTreeSet<String> = ["domain".to_owned()].into();
        assert_eq!(deps, &expected, "{service} may depend on domain only");
    }
    Ok(())
}

#[test]
fn domain_and_xtask_depend_on_no_member() -> anyhow::Result<()> {
    let edges = workspace_edges()?;
    assert!(
        edges.get("xtask").is_some_and(BTreeSet::is_empty),
        "xtask depends on workspace members: {edges:?}"
    );
    // domain's dev-dependency on itself (for the test-support feature) is the only edge.
    let domain = edges.get("domain").cloned().unwrap_or_default();
    assert!(
        domain.iter().all(|d| d == "domain"),
        "domain depends on {domain:?}"
    );
    Ok(())
}
