//! The claim returns each message with its contact and verdict facts only; what the messages
//! of a batch share (step templates by variant, mailbox, sequence and workspace settings) is
//! read once per batch, and every statement is prepared once per connection.

use chrono::{TimeDelta, Utc};
use domain::db::sending;

use crate::world::{Step, World, greenmail_smtp};

const STEP: Step = Step {
    subject: "Hello {{first_name|there}}",
    content: "Hi, a short note.",
    thread_with_previous: false,
};

#[tokio::test]
async fn a_claimed_batch_reads_what_its_messages_share_once() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let plain = world.enroll_many(5, "batch", "example.org").await?;
    let suppressed = world.enroll_many(2, "gone", "suppressed.example").await?;
    world
        .exec(&format!(
            "INSERT INTO suppressions (id, workspace_id, email, reason) \
             VALUES (gen_random_uuid(), '{}', '@suppressed.example', 'manual')",
            world.workspace_id
        ))
        .await?;
    // One message sends an A/B variant that only changes the subject.
    world
        .exec(&format!(
            "UPDATE steps SET variants = '[{{\"subject\": \"Variant B\"}}]' WHERE id = '{}'",
            world.steps[0]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE messages SET variant_index = 0 WHERE id = '{}'",
            plain[0]
        ))
        .await?;

    let all: Vec<_> = plain.iter().chain(&suppressed).copied().collect();
    let mut conn = world.conn().await?;
    let now = Utc::now();
    let lease = now + TimeDelta::minutes(5);
    let (first, second) = all.split_at(3);
    let mut claimed = sending::claim(&mut conn, first, "worker-a", now, lease).await?;
    claimed.extend(sending::claim(&mut conn, second, "worker-a", now, lease).await?);
    assert_eq!(claimed.len(), all.len());
    // Claimed once: a replayed batch finds them `sending`.
    assert!(
        sending::claim(&mut conn, &all, "worker-b", now, lease)
            .await?
            .is_empty()
    );
    for message in &claimed {
        assert_eq!(message.suppressed, suppressed.contains(&message.id));
        assert_eq!(message.sequence_id, world.sequence_id);
        assert_eq!(message.step_id, world.steps[0]);
        assert_eq!(message.variant_index, (message.id == plain[0]).then_some(0));
        assert_eq!(message.enrollment_status, "active");
    }

    let context = sending::claim_context(&mut conn, &claimed).await?;
    let mut subjects: Vec<(Option<i32>, &str, &str)> = context
        .steps
        .iter()
        .map(|s| {
            assert_eq!(s.step_id, world.steps[0]);
            (
                s.variant_index,
                s.subject_source.as_str(),
                s.content_source.as_str(),
            )
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            (None, STEP.subject, STEP.content),
            (Some(0), "Variant B", STEP.content)
        ]
    );
    assert_eq!(context.mailboxes.len(), 1);
    assert_eq!(context.mailboxes[0].id, world.mailbox_id);
    assert_eq!(context.mailboxes[0].email, world.mailbox_email);
    assert_eq!(context.sequences.len(), 1);
    assert_eq!(context.sequences[0].sequence_id, world.sequence_id);
    assert_eq!(context.sequences[0].workspace_id, world.workspace_id);
    assert_eq!(context.sequences[0].status, "active");

    // pg_prepared_statements is per session: ask the claiming connection.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements \
              WHERE statement LIKE '%FROM cand%' \
                AND statement NOT LIKE '%pg_prepared_statements%'",
        ),
        &mut conn,
    )
    .await?;
    assert_eq!(count.n, 1, "one prepared claim, reused by every call");
    Ok(())
}
