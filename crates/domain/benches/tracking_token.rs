//! Cost of one tracking token: encoding (the sender worker, once per link of every email) and
//! decoding (the tracker, once per request), for an open token and a click token with a
//! typical destination. Pure CPU, no services: each case runs `SEQ_BENCH_ITERATIONS`
//! (default 200,000) times after a warm-up and prints nanoseconds per token and the token's
//! length. docs/benchmarks.md records the figures.
//!
//! Run with `cargo bench -p domain --bench tracking_token`.

use std::hint::black_box;
use std::time::Instant;

use chrono::DateTime;
use domain::tracking_token::{TokenSigner, TrackingAction};
use uuid::Uuid;

fn main() -> anyhow::Result<()> {
    let iterations: u32 = match std::env::var("SEQ_BENCH_ITERATIONS") {
        Ok(value) => value.parse()?,
        Err(_) => 200_000,
    };
    let signer = TokenSigner::with_keys(&[7; 32], &[&[8; 32]])?;
    let sent_at =
        DateTime::from_timestamp(1_772_000_000, 0).ok_or_else(|| anyhow::anyhow!("time"))?;
    let (workspace_id, enrollment_id, message_id) =
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let cases = [
        (
            "open",
            TrackingAction::Open {
                workspace_id,
                enrollment_id,
                message_id,
            },
        ),
        (
            "click",
            TrackingAction::Click {
                workspace_id,
                enrollment_id,
                message_id,
                url: "https://example.com/landing?utm_source=newsletter&id=12345".to_owned(),
            },
        ),
    ];
    println!("bench: {iterations} iterations per case");
    for (name, action) in &cases {
        let token = signer.encode(action, sent_at);
        anyhow::ensure!(
            signer.decode(&token)?.action == *action,
            "{name}: round trip"
        );
        let encode = time(iterations, || {
            black_box(signer.encode(black_box(action), sent_at));
        });
        let decode = time(iterations, || {
            let _ = black_box(signer.decode(black_box(&token)));
        });
        println!(
            "bench: {name}: {} characters, encode {encode:.0} ns, decode {decode:.0} ns",
            token.len()
        );
    }
    Ok(())
}

/// Nanoseconds per call of `run`, after a tenth as many calls of warm-up.
fn time(iterations: u32, mut run: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        run();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        run();
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(iterations)
}
