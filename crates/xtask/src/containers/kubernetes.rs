//! The Kubernetes manifests deploy the images just built: every `image:` of the rendered prod
//! overlay must be one of them, name and tag.

use std::process::Command;

use anyhow::{Result, bail};

use crate::paths::Paths;
use crate::{deploy_tools, process};

pub fn check_prod_overlay(paths: &Paths, built: &[String]) -> Result<()> {
    let overlay = paths.root.join("deploy/k8s/overlays/prod");
    let rendered = process::output(
        Command::new(deploy_tools::kustomize(paths)?)
            .arg("build")
            .arg(&overlay),
    )?;
    let used = images(&rendered);
    if used.is_empty() {
        bail!("the prod overlay names no image");
    }
    let missing: Vec<&String> = used.iter().filter(|i| !built.contains(i)).collect();
    if !missing.is_empty() {
        bail!("the prod overlay uses images that were not built: {missing:?} (built: {built:?})");
    }
    eprintln!("kubernetes: the prod overlay uses only images just built: {used:?}");
    Ok(())
}

/// The distinct `image:` values of rendered manifests.
fn images(manifests: &str) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for line in manifests.lines() {
        let line = line.trim().trim_start_matches("- ");
        if let Some(image) = line.strip_prefix("image:") {
            let image = image.trim().trim_matches(['"', '\'']).to_owned();
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_read_from_containers_and_init_containers() {
        let manifests = "spec:\n  containers:\n    - image: sequence-service/api:0.1.0\n      \
                         name: api\n  initContainers:\n    - name: wait\n      \
                         image: \"sequence-service/api:0.1.0\"\n---\n    \
                         image: sequence-service/tracker:0.1.0\n";
        assert_eq!(
            images(manifests),
            vec![
                "sequence-service/api:0.1.0",
                "sequence-service/tracker:0.1.0"
            ]
        );
    }
}
