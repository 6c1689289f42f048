//! `domain::webhooks` signatures judged by the Standard Webhooks specification's own library
//! (`standardwebhooks` from PyPI, in `SEQ_TEST_PYTHON_STANDARDWEBHOOKS`): what receivers run.

use std::io::Write as _;
use std::process::{Command, Stdio};

use domain::webhooks::{WebhookSecret, sign};
use secrecy::ExposeSecret;
use serde_json::json;

/// Reads `{secret, id, timestamp, signature, body}` and prints `verified`, or why not.
const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
request = json.load(sys.stdin)
headers = {
    "webhook-id": request["id"],
    "webhook-timestamp": str(request["timestamp"]),
    "webhook-signature": request["signature"],
}
try:
    Webhook(request["secret"]).verify(request["body"], headers)
    print("verified")
except Exception as error:
    print(type(error).__name__)
"#;

/// What the reference library says of `signature` for `body` under `secret`.
fn judge(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> anyhow::Result<String> {
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
    let request = json!({
        "secret": secret.text().expose_secret(),
        "id": id,
        "timestamp": timestamp,
        "signature": signature,
        "body": body,
    });
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

const BODY: &str = r#"{"type":"contact.replied","timestamp":"2026-12-06T12:00:00Z","data":{"message_id":"0193a5a0-0000-7000-8000-000000000001","note":"naïve – ✓"}}"#;

#[test]
fn the_reference_library_verifies_what_we_sign() -> anyhow::Result<()> {
    let secret = WebhookSecret::generate();
    let now = chrono::Utc::now().timestamp();
    let headers = sign(
        std::slice::from_ref(&secret),
        "msg_01",
        now,
        BODY.as_bytes(),
    );
    assert_eq!(
        judge(&secret, &headers.id, now, &headers.signature, BODY)?,
        "verified"
    );
    // A changed body, id or timestamp, or another secret: refused.
    let tampered = BODY.replace("replied", "unsubscribed");
    assert_ne!(
        judge(&secret, &headers.id, now, &headers.signature, &tampered)?,
        "verified"
    );
    assert_ne!(
        judge(&secret, "msg_02", now, &headers.signature, BODY)?,
        "verified"
    );
    assert_ne!(
        judge(
            &WebhookSecret::generate(),
            &headers.id,
            now,
            &headers.signature,
            BODY
        )?,
        "verified"
    );
    Ok(())
}

#[test]
fn during_a_rotation_either_secret_verifies() -> anyhow::Result<()> {
    let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
    let now = chrono::Utc::now().timestamp();
    let headers = sign(
        &[new.clone(), old.clone()],
        "msg_rotating",
        now,
        BODY.as_bytes(),
    );
    assert_eq!(headers.signature.split(' ').count(), 2);
    for secret in [&old, &new] {
        assert_eq!(
            judge(secret, &headers.id, now, &headers.signature, BODY)?,
            "verified"
        );
    }
    Ok(())
}
