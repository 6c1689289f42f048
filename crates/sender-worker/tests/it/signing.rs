//! DKIM through the whole worker: the email GreenMail received verifies against the public
//! key (served to the verifier from a cache, not DNS), signed over the headers that matter.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::time::Instant;

use domain::config::{DkimAlgorithm, DkimKeyConfig};
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use uuid::Uuid;

use crate::world::{Step, World, greenmail_smtp, wait_received};

const SELECTOR: &str = "s2025";

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

#[tokio::test]
async fn an_email_from_a_domain_with_a_key_arrives_signed_and_verifies() -> anyhow::Result<()> {
    let step = Step {
        subject: "Signed {Hello|Hi}",
        content: "Hi {{first_name|there}}, see https://example.com/a.",
        thread_with_previous: false,
    };
    let mut world = World::new(greenmail_smtp()?, &[step]).await?;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim");
    world.config.sender_worker.dkim = vec![DkimKeyConfig {
        domain: "acme.test".to_owned(),
        selector: SELECTOR.to_owned(),
        algorithm: DkimAlgorithm::Rsa,
        private_key: None,
        private_key_file: Some(fixtures.join("rsa-2048.pkcs8.pem")),
    }];
    let to = format!("signed-{}@example.org", Uuid::now_v7().simple());
    let message = world
        .queue(world.enroll(&to, Some("Ada")).await?, 1)
        .await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    let raw = wait_received(&to, 1).await?.remove(0);

    let signature = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .split("\r\n")
        .find_map(|line| line.strip_prefix("DKIM-Signature:").map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("no DKIM-Signature in\n{raw}"))?;
    let signed: String = signature
        .split(';')
        .find_map(|tag| tag.trim().strip_prefix("h=").map(str::to_owned))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<String>()
        .to_ascii_lowercase();
    for header in [
        "from",
        "subject",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(
            signed.split(':').any(|h| h == header),
            "{header} not in h={signed}"
        );
    }

    let public = std::fs::read_to_string(fixtures.join("rsa-2048.pub.b64"))?;
    let record = format!("v=DKIM1; k=rsa; p={}", public.trim());
    let records = TxtRecords(HashMap::from([(
        format!("{SELECTOR}._domainkey.acme.test."),
        Txt::from(DomainKey::parse(record.as_bytes())?),
    )]));
    let parsed = AuthenticatedMessage::parse(raw.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("mail-auth cannot parse the email"))?;
    let results: Vec<DkimResult> = MessageAuthenticator::new_cloudflare()?
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&records))
        .await
        .iter()
        .map(|output| output.result().clone())
        .collect();
    assert_eq!(results, [DkimResult::Pass]);
    worker.stop().await
}
