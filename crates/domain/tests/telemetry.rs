//! OTLP export for real: a span recorded with `telemetry.otlp_endpoint` set reaches an
//! HTTP collector. Its own test binary, because it installs the process-wide subscriber.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use domain::config::{LogFormat, TelemetryConfig};

/// Accepts connections until one POSTs to /v1/traces; sends its body length.
fn collector(listener: TcpListener, found: mpsc::Sender<usize>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        });
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        if request_line.starts_with("POST /v1/traces") {
            let _ = found.send(body.len());
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_over_otlp_http() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}/v1/traces", listener.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || collector(listener, tx));

    let config = TelemetryConfig {
        log_format: LogFormat::Json,
        log_filter: "info".to_owned(),
        otlp_endpoint: endpoint,
    };
    let guard = domain::telemetry::init("telemetry-test", &config)?;
    tracing::info_span!("exported-span").in_scope(|| tracing::info!("inside"));
    // Shutting the provider down flushes the batch: this is what a service does on exit.
    drop(guard);

    let bytes = rx.recv_timeout(Duration::from_secs(20))?;
    assert!(bytes > 0, "the collector got an empty export");
    Ok(())
}
