//! DKIM signatures checked by an implementation independent of ours: the worker signs with
//! lettre and the other tests verify with mail-auth, so a mistake both Rust libraries share
//! (or that our glue makes in the same way on both sides) would pass them. Here Python's
//! dkimpy (Debian's python3-dkim, with python3-nacl for Ed25519) verifies the emails of a
//! two-step threaded sequence as a real SMTP server (Postfix's smtp-sink) received them, with
//! an RSA and an Ed25519 key; the public keys are given to it, no DNS is asked. A tampered copy
//! must fail, so the verifier is not one that passes everything.

use std::path::{Path, PathBuf};

use domain::config::{DkimAlgorithm, DkimKeyConfig};
use domain::testing::pipe_through;
use uuid::Uuid;

use crate::world::{SmtpSink, Step, World};

const SELECTOR: &str = "s2026";

const FIRST: Step = Step {
    subject: "Ça va, {{first_name|there}}? A question about {company}",
    content: "Hi {{first_name|there}},\n\nWe help teams like {company} send fewer, better \
              emails. Our pricing page has the details: https://example.com/pricing\n\n\
              Would a short call next week work for you?\n\nAna",
    thread_with_previous: false,
};
const FOLLOW_UP: Step = Step {
    subject: "",
    content: "Hi {{first_name|there}}, just bringing this back to the top of your inbox.",
    thread_with_previous: true,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim")
}

/// The Python interpreter that has dkimpy: `SEQ_TEST_PYTHON_DKIM`, set by `cargo xtask test`.
fn python() -> anyhow::Result<String> {
    std::env::var("SEQ_TEST_PYTHON_DKIM").map_err(|_| {
        anyhow::anyhow!(
            "SEQ_TEST_PYTHON_DKIM is not set; run `cargo xtask test` (it installs Debian's \
             python3-dkim and python3-nacl), or install them (apt-get install python3-dkim \
             python3-nacl) and set SEQ_TEST_PYTHON_DKIM=/usr/bin/python3"
        )
    })
}

/// dkimpy's verdict on `email` (CRLF line ends) with `record` served for the selector of
/// `acme.test`: `Ok(true)` on pass, `Ok(false)` on fail (its log printed).
async fn dkimpy_verifies(email: &str, record: &str) -> anyhow::Result<bool> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/dkimpy_verify.py");
    let output = pipe_through(
        tokio::process::Command::new(python()?)
            .arg(script)
            .arg(format!("{SELECTOR}._domainkey.acme.test={record}")),
        email.as_bytes(),
    )
    .await?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => {
            eprintln!("dkimpy: {said}");
            Ok(false)
        }
        _ => anyhow::bail!(
            "the dkimpy verifier could not run ({}): {said}",
            output.status
        ),
    }
}

/// Sends both steps to one contact through a worker signing with `key`, and returns the
/// emails as the SMTP server received them, with the line ends they had on the wire, first
/// step first.
async fn send_signed(key: DkimKeyConfig) -> anyhow::Result<Vec<String>> {
    let sink = SmtpSink::start(&[]).await?;
    let mut world = World::new(sink.addr, &[FIRST, FOLLOW_UP]).await?;
    world.config.sender_worker.dkim = vec![key];
    let to = format!("dkimpy-{}@example.org", Uuid::now_v7().simple());
    let enrollment = world.enroll(&to, Some("Zoë")).await?;
    let worker = world.start_worker()?;
    for step in 1..=2 {
        let message = world.queue(enrollment, step).await?;
        world.publish_job(message).await?;
        world.wait_for(message, &["sent"]).await?;
    }
    worker.stop().await?;
    let mut emails = sink.received()?;
    sink.stop().await?;
    // smtp-sink stores lines with LF; SMTP carried them with CRLF.
    for email in &mut emails {
        *email = email.replace("\r\n", "\n").replace('\n', "\r\n");
    }
    anyhow::ensure!(emails.len() == 2, "{} emails received", emails.len());
    // The sink's files come in no particular order: the first step is the one not in reply.
    emails.sort_by_key(|email| email.contains("\r\nIn-Reply-To: "));
    Ok(emails)
}

/// The value of the `DKIM-Signature` header's `tag`, unfolded.
fn signature_tag(email: &str, tag: &str) -> Option<String> {
    let head = email.split("\r\n\r\n").next()?.replace("\r\n\t", " ");
    let head = head.replace("\r\n ", " ");
    let signature = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("DKIM-Signature:"))?;
    signature
        .split(';')
        .find_map(|t| t.trim().strip_prefix(&format!("{tag}=")).map(str::to_owned))
        .map(|value| value.split_whitespace().collect())
}

async fn assert_dkimpy_verifies(
    algorithm: DkimAlgorithm,
    private_key: &str,
    public_key: &str,
    expected_a: &str,
) -> anyhow::Result<()> {
    // Fails early, before anything is sent, when the verifier is missing.
    python()?;
    let key = DkimKeyConfig {
        domain: "acme.test".to_owned(),
        selector: SELECTOR.to_owned(),
        algorithm,
        private_key: None,
        private_key_file: Some(fixtures().join(private_key)),
    };
    let public = std::fs::read_to_string(fixtures().join(public_key))?;
    let k = match algorithm {
        DkimAlgorithm::Rsa => "rsa",
        DkimAlgorithm::Ed25519 => "ed25519",
    };
    let record = format!("v=DKIM1; k={k}; p={}", public.trim());
    let emails = send_signed(key).await?;
    for (step, email) in emails.iter().enumerate() {
        assert_eq!(
            signature_tag(email, "a").as_deref(),
            Some(expected_a),
            "step {}: {email}",
            step + 1
        );
        assert!(
            dkimpy_verifies(email, &record).await?,
            "dkimpy rejects the signature of step {}:\n{email}",
            step + 1
        );
    }
    let follow_up = &emails[1];
    assert!(follow_up.contains("\r\nIn-Reply-To: "), "{follow_up}");
    let signed = signature_tag(follow_up, "h")
        .unwrap_or_default()
        .to_lowercase();
    for header in ["in-reply-to", "references", "list-unsubscribe"] {
        assert!(
            signed.split(':').any(|h| h == header),
            "{header} not signed: h={signed}"
        );
    }
    // The same verifier fails a copy whose body was changed in transit.
    let tampered = follow_up.replacen("just bringing", "just brining", 1);
    assert_ne!(
        &tampered, follow_up,
        "the body text to tamper with is there"
    );
    assert!(
        !dkimpy_verifies(&tampered, &record).await?,
        "dkimpy passed a tampered email"
    );
    Ok(())
}

#[tokio::test]
async fn dkimpy_verifies_rsa_signatures_of_sent_emails() -> anyhow::Result<()> {
    assert_dkimpy_verifies(
        DkimAlgorithm::Rsa,
        "rsa-2048.pkcs8.pem",
        "rsa-2048.pub.b64",
        "rsa-sha256",
    )
    .await
}

#[tokio::test]
async fn dkimpy_verifies_ed25519_signatures_of_sent_emails() -> anyhow::Result<()> {
    assert_dkimpy_verifies(
        DkimAlgorithm::Ed25519,
        "ed25519.pem",
        "ed25519.pub.b64",
        "ed25519-sha256",
    )
    .await
}
