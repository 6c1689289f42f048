//! A webhook receiver for tests: an HTTP server on a loopback port that records every
//! request and answers as the test says (2xx, another status, or never), can go down and
//! come back on the same port, and has every request it got judged by the Standard Webhooks
//! specification's own library ([`verify_all`]: `standardwebhooks` from PyPI, in
//! `SEQ_TEST_PYTHON_STANDARDWEBHOOKS`). [`insert_endpoint`] makes the endpoint that points
//! at it.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// When the request's body had been read (for benchmarks' delays).
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl Received {
    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answers (until the receiver is dropped).
    Hang,
}

struct State {
    received: Vec<Received>,
    answer: Answer,
}

pub struct WebhookReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
    server: Option<ServerHandle>,
    hung: CancellationToken,
}

impl WebhookReceiver {
    /// A receiver answering 204 on `127.0.0.1` and a free port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut receiver = WebhookReceiver {
            port: listener.local_addr()?.port(),
            state: Arc::new(Mutex::new(State {
                received: Vec::new(),
                answer: Answer::Status(204),
            })),
            server: None,
            hung: CancellationToken::new(),
        };
        receiver.serve(listener)?;
        Ok(receiver)
    }

    /// Where endpoints point.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn answer(&self, answer: Answer) {
        if let Ok(mut state) = self.state.lock() {
            state.answer = answer;
        }
    }

    /// Every request so far, in the order they came.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// How many requests came so far (cheaper than [`Self::received`] to poll).
    pub fn count(&self) -> usize {
        self.state.lock().map(|s| s.received.len()).unwrap_or(0)
    }

    /// Stops listening: connections are refused until [`Self::up`].
    pub async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(false).await;
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))?;
        self.serve(listener)
    }

    fn serve(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        let state = Arc::clone(&self.state);
        let hung = self.hung.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new((Arc::clone(&state), hung.clone())))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        self.server = Some(server.handle());
        tokio::spawn(server);
        Ok(())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.hung.cancel();
        if let Some(server) = self.server.take() {
            drop(server.stop(false));
        }
    }
}

type Shared = (Arc<Mutex<State>>, CancellationToken);

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (state, hung) = shared.get_ref();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = match state.lock() {
        Ok(mut state) => {
            state.received.push(Received {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
                body: String::from_utf8_lossy(&body).into_owned(),
                received_at: chrono::Utc::now(),
            });
            state.answer
        }
        Err(_) => Answer::Status(500),
    };
    match answer {
        Answer::Status(status) => {
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(status).body(format!("answered {}", status.as_u16()))
        }
        Answer::Hang => {
            hung.cancelled().await;
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

/// Inserts an enabled endpoint of `workspace` at `url` for `event_types` (empty: all) as the
/// API creates one, its new signing secret encrypted with `cipher`; returns its id and secret.
pub async fn insert_endpoint(
    conn: &mut diesel_async::AsyncPgConnection,
    cipher: &crate::crypto::SecretCipher,
    workspace: uuid::Uuid,
    url: &str,
    event_types: &[&str],
) -> anyhow::Result<(uuid::Uuid, crate::webhooks::WebhookSecret)> {
    use crate::db::webhook_endpoints::{self, EndpointValues, NewEndpoint};
    let id = uuid::Uuid::now_v7();
    let secret = crate::webhooks::WebhookSecret::generate();
    let secret_encrypted =
        cipher.encrypt(&secret.text(), &webhook_endpoints::secret_context(id))?;
    let values = EndpointValues {
        url: url.to_owned(),
        description: None,
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        enabled: true,
        disabled_reason: None,
    };
    let endpoint = NewEndpoint {
        id,
        workspace_id: workspace,
        values,
        secret_encrypted,
    };
    webhook_endpoints::insert(conn, &endpoint).await?;
    Ok((id, secret))
}

/// Reads JSON lines `{secret, id, timestamp, signature, body}`; prints `verified` or the
/// error's name per line.
const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
for line in sys.stdin:
    request = json.loads(line)
    headers = {
        "webhook-id": request["id"],
        "webhook-timestamp": request["timestamp"],
        "webhook-signature": request["signature"],
    }
    try:
        Webhook(request["secret"]).verify(request["body"], headers)
        print("verified")
    except Exception as error:
        print(type(error).__name__ + ": " + str(error))
"#;

/// Has the reference library verify every one of `received` with each of `secrets` (the
/// `whsec_...` texts); an error names the first request it refused.
pub fn verify_all(secrets: &[String], received: &[Received]) -> anyhow::Result<()> {
    let python = std::env::var("SEQ_TEST_PYTHON_STANDARDWEBHOOKS").map_err(|_| {
        anyhow::anyhow!(
            "SEQ_TEST_PYTHON_STANDARDWEBHOOKS is not set; run `cargo xtask test` (it installs \
             the standardwebhooks library from PyPI)"
        )
    })?;
    let mut child = Command::new(python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = String::new();
    let mut asked = Vec::new();
    for request in received {
        for secret in secrets {
            let line = json!({
                "secret": secret,
                "id": request.id,
                "timestamp": request.timestamp,
                "signature": request.signature,
                "body": request.body,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
            asked.push(request);
        }
    }
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(lines.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts = String::from_utf8(out.stdout)?;
    let verdicts: Vec<&str> = verdicts.lines().collect();
    anyhow::ensure!(
        verdicts.len() == asked.len(),
        "{} verdicts for {} requests",
        verdicts.len(),
        asked.len()
    );
    for (verdict, request) in verdicts.iter().zip(asked) {
        anyhow::ensure!(
            *verdict == "verified",
            "standardwebhooks refused {} ({verdict}): {}",
            request.id,
            request.body
        );
    }
    Ok(())
}
