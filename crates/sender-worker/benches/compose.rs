//! Cost of composing one email as the worker does (`compose_with_subject`, then the bytes
//! handed to SMTP), on one thread: the `send` bench's step (open and click tracking, links
//! tracked, the unsubscribe link), each email to its own contact with its own message id.
//! Pure CPU, no services: `SEQ_BENCH_ITERATIONS` (default 50,000) emails after a warm-up of
//! a tenth as many; prints the process's CPU time per email (utime + stime from /proc, which
//! a busy machine does not inflate as it does wall time), wall time, and the email's size.
//!
//! Run with `cargo bench -p sender-worker --bench compose`.

use std::hint::black_box;
use std::time::Instant;

use chrono::DateTime;
use domain::templates::ContactFields;
use domain::testing::process_stats::{clock_ticks, process_cpu_ticks};
use domain::tracking_token::TokenSigner;
use sender_worker::compose::{self, Email, Party, Source, Tracking};
use support::{BODY, SUBJECT};
use uuid::Uuid;

mod support;

fn main() -> anyhow::Result<()> {
    let iterations: u32 = match std::env::var("SEQ_BENCH_ITERATIONS") {
        Ok(value) => value.parse()?,
        Err(_) => 50_000,
    };
    let signer = TokenSigner::new(&[7; 32])?;
    let (subject, content) = (Source::new(SUBJECT), Source::new(BODY));
    let date = DateTime::from_timestamp(1_772_000_000, 0).ok_or_else(|| anyhow::anyhow!("time"))?;
    let email = |n: u32| Email {
        from: Party {
            address: format!("sales{}@acme-outreach.example", n % 200),
            name: Some(format!("Ana {} from Acme", n % 200)),
        },
        to: Party {
            address: format!("lead{n}@company{}.example", n % 997),
            name: None,
        },
        subject: subject.clone(),
        content: content.clone(),
        contact: ContactFields {
            email: format!("lead{n}@company{}.example", n % 997),
            first_name: (!n.is_multiple_of(10)).then(|| format!("Lead{n}")),
            last_name: Some("Lastname".to_owned()),
            company: Some(format!("Company {}", n % 997)),
            title: None,
            attributes: serde_json::json!({}),
        },
        message_id: Uuid::now_v7(),
        workspace_id: Uuid::from_u128(1),
        enrollment_id: Uuid::now_v7(),
        message_id_header: format!("<{}@acme-outreach.example>", Uuid::now_v7()),
        date,
        thread: None,
        tracking: Tracking {
            open: true,
            click: true,
            url_text_links: true,
            base_url: "https://track.acme.example".to_owned(),
            unsubscribe_link: true,
            unsubscribe_mailto: None,
        },
    };
    let emails: Vec<Email> = (0..iterations).map(email).collect();
    let compose_one = |email: &Email| -> anyhow::Result<usize> {
        let (subject, message) = compose::compose_with_subject(email, &signer)?;
        Ok(black_box(subject).len() + black_box(message.formatted()).len())
    };
    for email in emails.iter().take(emails.len() / 10) {
        compose_one(email)?;
    }
    let pid = std::process::id();
    let cpu_before = process_cpu_ticks(pid)?;
    let started = Instant::now();
    let mut bytes = 0;
    for email in &emails {
        bytes += compose_one(email)?;
    }
    let elapsed = started.elapsed();
    let cpu = (process_cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks();
    let per_email = |seconds: f64| seconds * 1e6 / f64::from(iterations.max(1));
    println!(
        "bench: {iterations} emails composed: {:.1} us CPU per email ({:.1} us wall), {} bytes per email",
        per_email(cpu),
        per_email(elapsed.as_secs_f64()),
        bytes / emails.len().max(1)
    );
    Ok(())
}
