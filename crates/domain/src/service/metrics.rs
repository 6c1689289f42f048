//! Prometheus metrics through the `metrics` facade. One recorder per process; services
//! started together in a test share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder on first use.
    pub fn install() -> Self {
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was set first, in which case ours stays unused
            // but rendering still works.
            let _ = metrics::set_global_recorder(recorder);
            handle
        });
        Self {
            handle: handle.clone(),
        }
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}
