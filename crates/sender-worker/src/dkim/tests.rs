//! Signs composed emails and verifies the signatures cryptographically with `mail-auth`, the
//! public keys served from a test DNS cache instead of DNS.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{TimeZone as _, Utc};
use domain::templates::ContactFields;
use domain::tracking_token::TokenSigner;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use uuid::Uuid;

use super::*;
use crate::compose::{Email, Party, Thread, Tracking, compose};

const RSA_PKCS8: &str = include_str!("../../tests/fixtures/dkim/rsa-2048.pkcs8.pem");
const RSA_PKCS1: &str = include_str!("../../tests/fixtures/dkim/rsa-2048.pkcs1.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/dkim/rsa-2048.pub.b64");
const ED25519: &str = include_str!("../../tests/fixtures/dkim/ed25519.pem");
const ED25519_PUBLIC: &str = include_str!("../../tests/fixtures/dkim/ed25519.pub.b64");

const DOMAIN: &str = "sender.example";
const SELECTOR: &str = "s2025";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dkim")
        .join(name)
}

fn key(algorithm: DkimAlgorithm, pem: &str) -> DkimKeyConfig {
    DkimKeyConfig {
        domain: DOMAIN.to_owned(),
        selector: SELECTOR.to_owned(),
        algorithm,
        private_key: Some(SecretString::from(pem)),
        private_key_file: None,
    }
}

fn email(from: &str) -> Email {
    Email {
        from: Party {
            address: from.to_owned(),
            name: Some("Grace Hopper".to_owned()),
        },
        to: Party {
            address: "ada@example.com".to_owned(),
            name: Some("Ada Lovelace".to_owned()),
        },
        subject: "Hello {{first_name}}".into(),
        content: "Hi {{first_name}},\n\nsee https://example.com/pricing. Ça va ?\n\nBye".into(),
        contact: ContactFields {
            email: "ada@example.com".to_owned(),
            first_name: Some("Ada".to_owned()),
            last_name: None,
            company: None,
            title: None,
            attributes: serde_json::json!({}),
        },
        message_id: Uuid::from_u128(3),
        workspace_id: Uuid::from_u128(1),
        enrollment_id: Uuid::from_u128(2),
        message_id_header: "<m3@sender.example>".to_owned(),
        date: Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .unwrap_or_else(|| panic!("valid date")),
        thread: Some(Thread {
            first_subject: "Hello {{first_name}}".into(),
            first_message_id: Uuid::from_u128(4),
            references: vec!["<m1@sender.example>".to_owned()],
        }),
        tracking: Tracking {
            open: true,
            click: true,
            url_text_links: false,
            base_url: "https://track.example.com".to_owned(),
            unsubscribe_link: true,
            unsubscribe_mailto: Some("unsubscribe@sender.example".to_owned()),
        },
    }
}

/// The email from `from`, composed, offered to `signers` for `from_domain`, and formatted.
fn signed(signers: &DkimSigners, from: &str, from_domain: &str) -> anyhow::Result<(bool, String)> {
    let token_signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef")?;
    let mut message = compose(&email(from), &token_signer)?;
    let signed = signers.sign(&mut message, from_domain);
    Ok((signed, String::from_utf8(message.formatted())?))
}

/// TXT records served to the verifier by name, so verification needs no DNS.
struct TxtRecords(HashMap<String, Txt>);

impl ResolverCache<String, Txt> for TxtRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: String, _: Txt, _: Instant) {}
}

/// The DKIM results of `raw`, with `record` published at `s2025._domainkey.sender.example`.
async fn verify(raw: &str, record: &str) -> anyhow::Result<Vec<DkimResult>> {
    let key = DomainKey::parse(record.as_bytes())?;
    let records = TxtRecords(HashMap::from([(
        format!("{SELECTOR}._domainkey.{DOMAIN}."),
        Txt::from(key),
    )]));
    let message = AuthenticatedMessage::parse(raw.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("mail-auth cannot parse the message"))?;
    let authenticator = MessageAuthenticator::new_cloudflare()?;
    let outputs = authenticator
        .verify_dkim(Parameters::new(&message).with_txt_cache(&records))
        .await;
    Ok(outputs
        .iter()
        .map(|output| output.result().clone())
        .collect())
}

fn rsa_record() -> String {
    format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim())
}

fn ed25519_record() -> String {
    format!("v=DKIM1; k=ed25519; p={}", ED25519_PUBLIC.trim())
}

/// The header fields named `name`, unfolded.
fn header(raw: &str, name: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .filter_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

/// The tag `tag` of a `DKIM-Signature` value, whitespace removed.
fn tag(signature: &str, tag: &str) -> Option<String> {
    signature.split(';').find_map(|spec| {
        let (name, value) = spec.split_once('=')?;
        (name.trim() == tag).then(|| value.split_whitespace().collect())
    })
}

#[tokio::test]
async fn an_rsa_pkcs8_signature_verifies_and_covers_the_required_headers() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[key(DkimAlgorithm::Rsa, RSA_PKCS8)])?;
    let (was_signed, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    assert!(was_signed);

    assert_eq!(verify(&raw, &rsa_record()).await?, vec![DkimResult::Pass]);
    let signatures = header(&raw, "DKIM-Signature");
    let [signature] = signatures.as_slice() else {
        panic!("one DKIM-Signature expected: {signatures:?}");
    };
    assert_eq!(tag(signature, "a").as_deref(), Some("rsa-sha256"));
    assert_eq!(tag(signature, "c").as_deref(), Some("relaxed/relaxed"));
    assert_eq!(tag(signature, "d").as_deref(), Some(DOMAIN));
    assert_eq!(tag(signature, "s").as_deref(), Some(SELECTOR));
    let signed_headers = tag(signature, "h").unwrap_or_default();
    let signed_headers: Vec<&str> = signed_headers.split(':').collect();
    for required in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
    ] {
        assert!(
            signed_headers.contains(&required),
            "{required} not in h={signed_headers:?}"
        );
    }
    // The body part's Content-Type was lent to the headers for signing only.
    assert_eq!(header(&raw, "Content-Type").len(), 1, "{raw}");
    assert_eq!(header(&raw, "In-Reply-To"), vec!["<m1@sender.example>"]);
    Ok(())
}

#[tokio::test]
async fn an_rsa_pkcs1_key_signs_too() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[key(DkimAlgorithm::Rsa, RSA_PKCS1)])?;
    let (was_signed, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    assert!(was_signed);
    assert_eq!(verify(&raw, &rsa_record()).await?, vec![DkimResult::Pass]);
    Ok(())
}

#[tokio::test]
async fn an_ed25519_key_from_a_file_signs() -> anyhow::Result<()> {
    let mut config = key(DkimAlgorithm::Ed25519, "");
    config.private_key = None;
    config.private_key_file = Some(fixture("ed25519.pem"));
    let signers = DkimSigners::from_config(&[config])?;
    let (was_signed, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    assert!(was_signed);

    assert_eq!(
        verify(&raw, &ed25519_record()).await?,
        vec![DkimResult::Pass]
    );
    let signatures = header(&raw, "DKIM-Signature");
    let signature = signatures.first().map(String::as_str).unwrap_or_default();
    assert_eq!(tag(signature, "a").as_deref(), Some("ed25519-sha256"));
    Ok(())
}

#[tokio::test]
async fn a_tampered_subject_fails_verification() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[key(DkimAlgorithm::Rsa, RSA_PKCS8)])?;
    let (_, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    let subject = header(&raw, "Subject");
    assert_eq!(subject, vec!["Re: Hello Ada"]);
    let tampered = raw.replacen("Subject: Re: Hello Ada", "Subject: Re: Hello Eve", 1);
    assert_ne!(tampered, raw);

    assert_eq!(
        verify(&tampered, &rsa_record()).await?,
        vec![DkimResult::Fail(mail_auth::Error::FailedVerification)]
    );
    Ok(())
}

#[tokio::test]
async fn a_tampered_body_fails_verification() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[key(DkimAlgorithm::Ed25519, ED25519)])?;
    let (_, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    let tampered = raw.replacen("Bye", "Buy", 1);
    assert_ne!(tampered, raw);

    let results = verify(&tampered, &ed25519_record()).await?;
    assert!(
        results.len() == 1 && !results.contains(&DkimResult::Pass),
        "{results:?}"
    );
    Ok(())
}

#[test]
fn only_the_exact_from_domain_is_signed_in_any_case() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[key(DkimAlgorithm::Rsa, RSA_PKCS8)])?;
    let (was_signed, raw) = signed(&signers, "grace@other.example", "other.example")?;
    assert!(!was_signed);
    assert!(header(&raw, "DKIM-Signature").is_empty());

    let (was_signed, raw) = signed(&signers, "grace@news.sender.example", "news.sender.example")?;
    assert!(!was_signed);
    assert!(header(&raw, "DKIM-Signature").is_empty());

    let (was_signed, raw) = signed(&signers, "grace@Sender.Example", "Sender.EXAMPLE")?;
    assert!(was_signed);
    assert_eq!(header(&raw, "DKIM-Signature").len(), 1);
    assert!(signers.has_key("SENDER.example"));
    assert!(!signers.is_empty());
    Ok(())
}

#[test]
fn no_keys_sign_nothing() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[])?;
    assert!(signers.is_empty());
    let (was_signed, raw) = signed(&signers, "grace@sender.example", DOMAIN)?;
    assert!(!was_signed);
    assert!(header(&raw, "DKIM-Signature").is_empty());
    Ok(())
}

#[test]
fn an_unreadable_key_file_names_the_key() {
    let mut config = key(DkimAlgorithm::Rsa, "");
    config.private_key = None;
    config.private_key_file = Some(fixture("missing.pem"));
    let other = key(DkimAlgorithm::Ed25519, ED25519);
    let other = DkimKeyConfig {
        domain: "first.example".to_owned(),
        ..other
    };
    let error = DkimSigners::from_config(&[other, config])
        .err()
        .unwrap_or_else(|| panic!("a missing file must fail"));
    let message = error.to_string();
    assert!(matches!(error, DkimError::ReadKeyFile { index: 1, .. }));
    assert!(
        message.starts_with("sender_worker.dkim[1] (sender.example)"),
        "{message}"
    );
    assert!(message.contains("missing.pem"), "{message}");
}

#[test]
fn an_unparsable_key_names_the_key_but_not_its_material() {
    for (algorithm, material) in [
        (
            DkimAlgorithm::Rsa,
            "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n",
        ),
        (DkimAlgorithm::Rsa, "U0VDUkVUU0VDUkVU"),
        (DkimAlgorithm::Ed25519, "U0VDUkVUU0VDUkVU"),
        (DkimAlgorithm::Ed25519, RSA_PKCS8),
    ] {
        let error = DkimSigners::from_config(&[key(algorithm, material)])
            .err()
            .unwrap_or_else(|| panic!("{algorithm:?} key {material:?} must not parse"));
        let message = format!("{error} {error:?}");
        assert!(
            matches!(error, DkimError::InvalidKey { index: 0, .. }),
            "{message}"
        );
        assert!(
            message.starts_with("sender_worker.dkim[0] (sender.example)"),
            "{message}"
        );
        assert!(!message.contains("U0VDUkVU"), "{message}");
        assert!(!message.contains("MII"), "{message}");
    }
}

#[test]
fn two_keys_for_one_domain_are_refused() {
    let upper = DkimKeyConfig {
        domain: "SENDER.example".to_owned(),
        ..key(DkimAlgorithm::Ed25519, ED25519)
    };
    let error = DkimSigners::from_config(&[key(DkimAlgorithm::Rsa, RSA_PKCS8), upper])
        .err()
        .unwrap_or_else(|| panic!("a second key for the domain must fail"));
    assert!(
        matches!(error, DkimError::DuplicateDomain { index: 1, .. }),
        "{error}"
    );
}

#[test]
fn debug_output_shows_no_key_material() -> anyhow::Result<()> {
    let signers = DkimSigners::from_config(&[
        key(DkimAlgorithm::Rsa, RSA_PKCS8),
        DkimKeyConfig {
            domain: "other.example".to_owned(),
            ..key(DkimAlgorithm::Ed25519, ED25519)
        },
    ])?;
    let debug = format!("{signers:?} {signers:#?}");
    assert!(
        debug.contains(SELECTOR) && debug.contains("other.example"),
        "{debug}"
    );
    for pem in [RSA_PKCS8, ED25519] {
        for line in pem.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!debug.contains(line), "{debug}");
        }
    }
    Ok(())
}
