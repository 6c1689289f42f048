//! deploy/k8s rendered by kustomize (base, dev, prod), every object validated by kubeconform
//! against the Kubernetes JSON schemas and KEDA's ScaledObject CRD, then held to what schemas
//! cannot say: probes, limits, graceful termination, a budget per service, no secret values,
//! and worker (sender-worker, webhooks) scaling within the partitions. The tools come from `cargo xtask test`
//! (`SEQ_TEST_KUSTOMIZE`, `SEQ_TEST_KUBECONFORM`, `SEQ_TEST_K8S_SCHEMAS`, `SEQ_TEST_KEDA_CRD`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml::Value;

const DIRECTORIES: [&str; 3] = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/dev",
    "deploy/k8s/overlays/prod",
];
const SERVICES: [&str; 6] = [
    "api",
    "scheduler",
    "sender-worker",
    "tracker",
    "inbox-watcher",
    "webhooks",
];
/// The sender worker's Kafka consumer group (`sender_worker::worker::CONSUMER_GROUP`; xtask
/// depends on no service crate).
const WORKER_GROUP: &str = "sender-worker";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(var: &str) -> anyhow::Result<String> {
    std::env::var(var)
        .map_err(|_| anyhow::anyhow!("{var} is not set; run `cargo xtask test`, which installs it"))
}

/// `kustomize build` of a directory, as YAML.
fn render(directory: &str) -> anyhow::Result<String> {
    let output = Command::new(tool("SEQ_TEST_KUSTOMIZE")?)
        .args(["build", directory])
        .current_dir(root())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "kustomize build {directory}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn objects(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"].as_str() == Some(name))
}

/// KEDA's CRD turned into the JSON schema kubeconform reads, at
/// `<dir>/keda.sh/scaledobject_v1alpha1.json`.
fn keda_schema(dir: &Path) -> anyhow::Result<()> {
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(tool("SEQ_TEST_KEDA_CRD")?)?)?;
    let version = crd["spec"]["versions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str() == Some("v1alpha1"))
        .ok_or_else(|| anyhow::anyhow!("the ScaledObject CRD has no v1alpha1"))?;
    let schema: serde_json::Value = serde_json::to_value(&version["schema"]["openAPIV3Schema"])?;
    let target = dir.join("keda.sh");
    std::fs::create_dir_all(&target)?;
    std::fs::write(
        target.join("scaledobject_v1alpha1.json"),
        serde_json::to_vec_pretty(&schema)?,
    )?;
    Ok(())
}

/// kubeconform's file name for a kind's schema: `deployment-apps-v1`, `configmap-v1`.
fn schema_name(kind: &str, api_version: &str) -> String {
    let suffix = match api_version.split_once('/') {
        Some((group, version)) => {
            let group = group.split('.').next().unwrap_or(group);
            format!("-{group}-{version}")
        }
        None => format!("-{api_version}"),
    };
    format!("{}{suffix}", kind.to_lowercase())
}

/// The schemas of the Kubernetes kinds in `objects`, made standalone into `dir`:
/// kubernetes-validate's schemas point their `$ref`s at `/api/_definitions.json`, which
/// kubeconform cannot resolve, so the definitions are inlined as `$defs`.
fn kubernetes_schemas(objects: &[Value], dir: &Path) -> anyhow::Result<()> {
    let source = PathBuf::from(tool("SEQ_TEST_K8S_SCHEMAS")?);
    let local = |text: &str| text.replace("\"/api/_definitions.json#/$defs/", "\"#/$defs/");
    let definitions: serde_json::Value = serde_json::from_str(&local(&std::fs::read_to_string(
        source.join("_definitions.json"),
    )?))?;
    std::fs::create_dir_all(dir)?;
    for object in objects {
        let (Some(kind), Some(api_version)) =
            (object["kind"].as_str(), object["apiVersion"].as_str())
        else {
            anyhow::bail!("an object without kind or apiVersion: {object:?}");
        };
        if api_version.starts_with("keda.sh/") {
            continue;
        }
        let name = format!("{}.json", schema_name(kind, api_version));
        let file = source.join(&name);
        let mut schema: serde_json::Value = serde_json::from_str(&local(
            &std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        ))?;
        schema["$defs"] = definitions["$defs"].clone();
        std::fs::write(dir.join(name), serde_json::to_vec(&schema)?)?;
    }
    Ok(())
}

#[test]
fn schema_names_follow_kubeconform() {
    assert_eq!(schema_name("Deployment", "apps/v1"), "deployment-apps-v1");
    assert_eq!(schema_name("ConfigMap", "v1"), "configmap-v1");
    assert_eq!(
        schema_name("Ingress", "networking.k8s.io/v1"),
        "ingress-networking-v1"
    );
}

#[test]
fn every_rendered_manifest_passes_kubeconform() -> anyhow::Result<()> {
    let kubeconform = tool("SEQ_TEST_KUBECONFORM")?;
    let work = tempfile::tempdir()?;
    keda_schema(work.path())?;
    let kubernetes_location = format!(
        "{}/kubernetes/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        work.path().display()
    );
    let crd_location = format!(
        "{}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        work.path().display()
    );
    for directory in DIRECTORIES {
        let file = work
            .path()
            .join(format!("{}.yaml", directory.replace('/', "_")));
        let rendered = render(directory)?;
        kubernetes_schemas(&objects(&rendered)?, &work.path().join("kubernetes"))?;
        std::fs::write(&file, rendered)?;
        let output = Command::new(&kubeconform)
            .args(["-strict", "-summary"])
            .args(["-schema-location", &kubernetes_location])
            .args(["-schema-location", &crd_location])
            .arg(&file)
            .output()?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{directory}:\n{report}");
        // A missing schema would be an error, never a silent skip.
        assert!(
            report.contains("Invalid: 0, Errors: 0, Skipped: 0"),
            "{directory}:\n{report}"
        );
    }
    Ok(())
}

#[test]
fn every_service_runs_with_probes_limits_a_budget_and_graceful_termination() -> anyhow::Result<()> {
    for directory in DIRECTORIES {
        let objects = objects(&render(directory)?)?;
        assert!(
            of_kind(&objects, "Secret").is_empty(),
            "{directory}: secret values must never be committed"
        );
        let deployments: BTreeSet<&str> = of_kind(&objects, "Deployment")
            .iter()
            .filter_map(|d| d["metadata"]["name"].as_str())
            .collect();
        assert_eq!(deployments, SERVICES.into_iter().collect(), "{directory}");
        for service in SERVICES {
            let deployment = named(&objects, "Deployment", service)
                .ok_or_else(|| anyhow::anyhow!("{directory}: no {service} Deployment"))?;
            let pod = &deployment["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            let at = format!("{directory}: {service}");
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"].as_str(),
                Some("/readyz"),
                "{at}"
            );
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"].as_str(),
                Some("/healthz"),
                "{at}"
            );
            for (kind, resource) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                assert!(
                    !container["resources"][kind][resource].is_null(),
                    "{at}: no {kind}.{resource}"
                );
            }
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{at}"
            );
            // The services stop within shutdown.grace_period_seconds (25) after SIGTERM.
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(0);
            assert!(grace >= 30, "{at}: terminationGracePeriodSeconds {grace}");
            let secret = container["envFrom"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|source| source["secretRef"]["name"].as_str() == Some("sequence-secrets"));
            assert!(
                secret,
                "{at}: settings must reference the Secret sequence-secrets"
            );
            assert!(
                named(&objects, "PodDisruptionBudget", service).is_some(),
                "{at}: no PDB"
            );
        }
        for public in ["api", "tracker"] {
            assert!(
                named(&objects, "Service", public).is_some(),
                "{directory}: no {public} Service"
            );
            assert!(
                named(&objects, "Ingress", public).is_some(),
                "{directory}: no {public} Ingress"
            );
        }
        let job = named(&objects, "Job", "sequence-migrate")
            .ok_or_else(|| anyhow::anyhow!("{directory}: no migration Job"))?;
        let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args, ["migrate", "up"], "{directory}");
    }
    Ok(())
}

#[test]
fn workers_scale_by_cpu_in_dev_and_by_kafka_lag_in_prod_within_the_partitions() -> anyhow::Result<()>
{
    let dev = objects(&render("deploy/k8s/overlays/dev")?)?;
    assert!(named(&dev, "HorizontalPodAutoscaler", "sender-worker").is_some());
    assert!(of_kind(&dev, "ScaledObject").is_empty());

    let prod = objects(&render("deploy/k8s/overlays/prod")?)?;
    // KEDA runs an HPA of its own: two autoscalers on one Deployment would fight.
    let hpa_targets: Vec<&str> = of_kind(&prod, "HorizontalPodAutoscaler")
        .iter()
        .filter_map(|h| h["spec"]["scaleTargetRef"]["name"].as_str())
        .collect();
    assert!(!hpa_targets.contains(&"sender-worker"), "{hpa_targets:?}");
    let scaled = named(&prod, "ScaledObject", "sender-worker")
        .ok_or_else(|| anyhow::anyhow!("prod has no ScaledObject for the sender workers"))?;
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("sender-worker")
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("kafka"));
    assert_eq!(trigger["metadata"]["topic"].as_str(), Some("email-jobs"));
    assert_eq!(
        trigger["metadata"]["consumerGroup"].as_str(),
        Some(WORKER_GROUP)
    );
    let partitions = partitions(&prod, "prod")?;
    let max = scaled["spec"]["maxReplicaCount"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        max <= partitions,
        "{max} workers for {partitions} partitions: the extra ones would get no jobs"
    );
    Ok(())
}

/// The ConfigMap's `SEQ_KAFKA__PARTITIONS` of a rendered overlay.
fn partitions(objects: &[Value], directory: &str) -> anyhow::Result<u64> {
    let config = named(objects, "ConfigMap", "sequence-config")
        .ok_or_else(|| anyhow::anyhow!("{directory} has no ConfigMap"))?;
    Ok(config["data"]["SEQ_KAFKA__PARTITIONS"]
        .as_str()
        .unwrap_or_default()
        .parse()?)
}

/// The webhooks replicas share deliveries through leases in PostgreSQL, but new events are
/// sent by the replica that read them from its partitions: scaled by CPU everywhere, never
/// beyond the partitions.
#[test]
fn webhooks_scale_by_cpu_within_the_partitions_in_every_overlay() -> anyhow::Result<()> {
    for directory in DIRECTORIES {
        let objects = objects(&render(directory)?)?;
        let hpa = named(&objects, "HorizontalPodAutoscaler", "webhooks")
            .ok_or_else(|| anyhow::anyhow!("{directory}: no HPA for webhooks"))?;
        let target = &hpa["spec"]["scaleTargetRef"];
        assert_eq!(target["kind"].as_str(), Some("Deployment"), "{directory}");
        assert_eq!(target["name"].as_str(), Some("webhooks"), "{directory}");
        let metric = &hpa["spec"]["metrics"][0]["resource"];
        assert_eq!(metric["name"].as_str(), Some("cpu"), "{directory}");
        let min = hpa["spec"]["minReplicas"].as_u64().unwrap_or(0);
        let max = hpa["spec"]["maxReplicas"].as_u64().unwrap_or(u64::MAX);
        let partitions = partitions(&objects, directory)?;
        assert!(
            1 <= min && min <= max && max <= partitions,
            "{directory}: webhooks from {min} to {max} replicas on {partitions} partitions"
        );
        let deployment = named(&objects, "Deployment", "webhooks")
            .ok_or_else(|| anyhow::anyhow!("{directory}: no webhooks Deployment"))?;
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some("9105"),
            "{directory}"
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
                .as_u64(),
            Some(9105),
            "{directory}"
        );
        assert!(
            of_kind(&objects, "ScaledObject")
                .iter()
                .all(|s| s["spec"]["scaleTargetRef"]["name"].as_str() != Some("webhooks")),
            "{directory}: two autoscalers on webhooks would fight"
        );
    }
    Ok(())
}
