//! Batches of events applied in one transaction end where the same events applied one at a
//! time end: two worlds built alike, one fed a mixed batch, the other the same events one by
//! one, compared row by row (enrollments, messages, statistics, contacts, announcements).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use domain::events::{Client, EmailEvent, Inbound, MessageRef, WebhookEvent};
use domain::kafka::Envelope;
use scheduler::outcomes;
use uuid::Uuid;

use crate::outcomes::{WEBHOOK_EVENTS, apply, envelope, one_sent_step, sent, webhooks};
use crate::world::{World, at};

/// Three steps one and two days apart.
const STEPS: [(i32, i32, i32); 3] = [(0, 0, 0), (1, 0, 0), (2, 0, 0)];
const ENROLLMENTS: usize = 6;

/// What an event of the script is about: an enrollment by its index, and the message of a
/// step (the dispatched first one, or one that no longer exists).
#[derive(Debug, Clone, Copy)]
enum Of {
    First(usize),
    Gone(usize),
}

/// One event of a script: about what, what, at which minute after `now`.
type Scripted = (Of, Kind, i64);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sent(i32),
    Opened(bool),
    Clicked(bool),
    Replied,
    HardBounce,
    SoftBounce,
    Failed,
    Held,
}

/// A world of [`ENROLLMENTS`] enrollments at step 1, their first messages out at `now`.
struct Dispatched {
    world: World,
    enrollments: Vec<Uuid>,
    messages: Vec<Uuid>,
    /// Stand-ins for messages that do not exist, one per enrollment.
    gone: Vec<Uuid>,
}

async fn dispatched(now: DateTime<Utc>) -> anyhow::Result<Dispatched> {
    let (world, first, first_message) = one_sent_step(&STEPS, now).await?;
    // Everything announced, so the snapshots compare the announcements too.
    crate::webhook_events::subscribe(&world, &[]).await?;
    let mut enrollments = vec![first];
    enrollments.extend(world.enroll(ENROLLMENTS as i64 - 1, now).await?);
    let clock: std::sync::Arc<dyn domain::clock::Clock> =
        std::sync::Arc::new(domain::clock::ManualClock::new(now));
    let dispatcher =
        scheduler::dispatch::Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, ENROLLMENTS - 1);
    let mut messages = vec![first_message];
    for enrollment in &enrollments[1..] {
        messages.push(world.messages_of(*enrollment).await?.remove(0).id);
    }
    world.sent_by_worker(&messages[1..], now).await?;
    Ok(Dispatched {
        world,
        enrollments,
        messages,
        gone: (0..ENROLLMENTS).map(|_| Uuid::now_v7()).collect(),
    })
}

impl Dispatched {
    fn event(&self, of: Of, kind: Kind) -> EmailEvent {
        let (index, message_id) = match of {
            Of::First(i) => (i, self.messages[i]),
            Of::Gone(i) => (i, self.gone[i]),
        };
        let enrollment_id = self.enrollments[index];
        let message = MessageRef {
            message_id,
            enrollment_id,
        };
        match kind {
            Kind::Sent(step) => sent(message_id, enrollment_id, step),
            Kind::Opened(is_bot) => EmailEvent::Opened {
                message,
                is_bot,
                bot_reason: None,
                client: Client::default(),
            },
            Kind::Clicked(is_bot) => EmailEvent::Clicked {
                message,
                url: "https://example.com/".to_owned(),
                is_bot,
                bot_reason: None,
                client: Client::default(),
            },
            Kind::Replied => EmailEvent::Replied {
                message,
                inbound: Inbound::default(),
            },
            Kind::HardBounce | Kind::SoftBounce => EmailEvent::Bounced {
                message,
                hard: matches!(kind, Kind::HardBounce),
                diagnostic: None,
            },
            Kind::Failed => EmailEvent::Failed {
                message,
                reason: "rejected".to_owned(),
            },
            Kind::Held => EmailEvent::Held {
                message,
                step_order: 1,
                reason: "missing_variable: first_name".to_owned(),
            },
        }
    }

    /// The script's events as envelopes, at `now` plus their minute; `copies` lists
    /// positions whose envelope is the same as an earlier position's (a redelivery).
    fn envelopes(
        &self,
        now: DateTime<Utc>,
        script: &[Scripted],
        copies: &[(usize, usize)],
    ) -> Vec<Envelope<EmailEvent>> {
        let mut envelopes: Vec<Envelope<EmailEvent>> = script
            .iter()
            .map(|&(of, kind, minute)| {
                envelope(
                    &self.world,
                    now + TimeDelta::minutes(minute),
                    self.event(of, kind),
                )
            })
            .collect();
        for &(copy, of) in copies {
            envelopes[copy] = envelopes[of].clone();
        }
        envelopes
    }

    /// Every row the events may have changed, with ids written as positions, so two
    /// worlds compare.
    async fn snapshot(&self) -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = Text)]
            line: String,
        }
        let mut conn = self.world.conn().await?;
        let mut lines = Vec::new();
        for sql in [
            "SELECT concat_ws(' ', e.id, e.status, e.current_step, e.next_send_at, \
                    e.last_sent_at, e.completed_at, e.stop_reason, e.mailbox_id IS NOT NULL, \
                    c.status) AS line \
               FROM enrollments e JOIN contacts c ON c.id = e.contact_id ORDER BY e.id",
            "SELECT concat_ws(' ', id, enrollment_id, step_order, status, sent_at, retry_at, \
                    last_error) AS line FROM messages ORDER BY id",
            "SELECT concat_ws(' ', s.step_order, t.sent, t.failed, t.bounced, t.opened_human, \
                    t.opened_bot, t.clicked_human, t.clicked_bot, t.replied, t.unsubscribed, \
                    t.complained) AS line \
               FROM step_stats t JOIN steps s ON s.id = t.step_id ORDER BY s.step_order",
            "SELECT concat_ws(' ', sequence_id, enrolled, active, paused, completed, replied, \
                    bounced, unsubscribed, stopped, failed) AS line FROM sequence_stats",
            "SELECT concat_ws(' ', 'suppressed', e.id, s.reason) AS line \
               FROM suppressions s \
               JOIN contacts c ON c.workspace_id = s.workspace_id AND c.email = s.email \
               JOIN enrollments e ON e.contact_id = c.id",
            "SELECT concat_ws(' ', event_type, message_id, enrollment_id, occurred_at, \
                    is_bot) AS line FROM events ORDER BY 1",
        ] {
            let rows: Vec<Line> = diesel::sql_query(sql).load(&mut conn).await?;
            lines.extend(rows.into_iter().map(|r| r.line));
        }
        let mut rows: Vec<String> = lines.iter().map(|l| self.positions(l)).collect();
        // Ids order rows differently in two worlds; the positions do not.
        rows.sort();
        for (key, announced) in self
            .world
            .outbox_records::<WebhookEvent>(WEBHOOK_EVENTS)
            .await?
        {
            let data = &announced.body.data;
            rows.push(self.positions(&format!(
                "announced {key} {} {} {} {}",
                announced.body.event_type, data["step_order"], data["message_id"], data["status"]
            )));
        }
        Ok(rows)
    }

    fn positions(&self, line: &str) -> String {
        let mut names: HashMap<String, String> = HashMap::new();
        for (i, id) in self.enrollments.iter().enumerate() {
            names.insert(id.to_string(), format!("enrollment{i}"));
        }
        for (i, id) in self.messages.iter().enumerate() {
            names.insert(id.to_string(), format!("message{i}"));
        }
        for (i, id) in self.gone.iter().enumerate() {
            names.insert(id.to_string(), format!("gone{i}"));
        }
        names.insert(self.world.sequence_id.to_string(), "sequence".to_owned());
        let mut line = line.to_owned();
        for (id, name) in names {
            line = line.replace(&id, &name);
        }
        line
    }
}

/// Applies `envelopes` as one batch; returns which were applied.
async fn apply_as_batch(
    world: &World,
    envelopes: &[Envelope<EmailEvent>],
) -> anyhow::Result<Vec<bool>> {
    let mut conn = world.conn().await?;
    let outcomes = conn
        .transaction(async |tx| outcomes::apply_batch(tx, envelopes, &webhooks(), None).await)
        .await?;
    Ok(outcomes.into_iter().map(|o| o.applied).collect())
}

async fn apply_one_by_one(
    world: &World,
    envelopes: &[Envelope<EmailEvent>],
) -> anyhow::Result<Vec<bool>> {
    let mut applied = Vec::new();
    for e in envelopes {
        applied.push(apply(world, e).await?);
    }
    Ok(applied)
}

/// Each enrollment's events in its order, the enrollments interleaved.
fn mixed_script() -> (Vec<Scripted>, Vec<(usize, usize)>) {
    use Kind::*;
    use Of::*;
    let per_enrollment: Vec<Vec<Scripted>> = vec![
        // Two `sent` moving it twice, a stale one between, a third completing it; opens
        // repeated (counted once per person kind), a soft bounce.
        vec![
            (First(0), Sent(1), 1),
            (First(0), Opened(false), 2),
            (First(0), Opened(false), 3),
            (First(0), Opened(true), 3),
            (Gone(0), Sent(2), 60),
            (First(0), Sent(1), 61),
            (First(0), SoftBounce, 62),
            (Gone(0), Sent(3), 120),
        ],
        // Advanced, then stopped by its reply; a click by a person and one by a bot.
        vec![
            (First(1), Sent(1), 1),
            (First(1), Clicked(false), 2),
            (First(1), Clicked(true), 2),
            (First(1), Replied, 5),
        ],
        // Stopped by its reply before its `sent` is applied: not advanced, the message sent.
        vec![(First(2), Replied, 1), (First(2), Sent(1), 2)],
        // Advanced, then a hard bounce; a late `sent` again does not undo the bounce.
        vec![
            (First(3), Sent(1), 1),
            (First(3), HardBounce, 2),
            (First(3), Sent(1), 3),
        ],
        // Held (paused), then its step sent after all: a paused enrollment still moves.
        vec![(First(4), Held, 1), (First(4), Sent(1), 2)],
        // Failed, then a `sent` of the same message: stays failed.
        vec![
            (First(5), Failed, 1),
            (First(5), Sent(1), 2),
            (First(5), Opened(false), 3),
        ],
    ];
    let mut script = Vec::new();
    let longest = per_enrollment.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for events in &per_enrollment {
            if let Some(event) = events.get(round) {
                script.push(*event);
            }
        }
    }
    // The first open of enrollment 0 delivered twice within the batch.
    let first_open = script
        .iter()
        .position(|(of, kind, _)| matches!((of, kind), (Of::First(0), Kind::Opened(false))))
        .unwrap_or(0);
    script.push(script[first_open]);
    let copy = script.len() - 1;
    (script, vec![(copy, first_open)])
}

/// Two worlds built alike, and the mixed script's events for each.
struct Twins {
    batched: Dispatched,
    single: Dispatched,
    batch: Vec<Envelope<EmailEvent>>,
    one_by_one: Vec<Envelope<EmailEvent>>,
    /// The redelivered copies among the events: (position, position of the original).
    copies: Vec<(usize, usize)>,
}

async fn twins() -> anyhow::Result<Twins> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (script, copies) = mixed_script();
    let batched = dispatched(now).await?;
    let single = dispatched(now).await?;
    let batch = batched.envelopes(now, &script, &copies);
    let one_by_one = single.envelopes(now, &script, &copies);
    Ok(Twins {
        batched,
        single,
        batch,
        one_by_one,
        copies,
    })
}

#[tokio::test]
async fn a_mixed_batch_ends_as_its_events_applied_one_by_one() -> anyhow::Result<()> {
    let t = twins().await?;

    let applied = apply_as_batch(&t.batched.world, &t.batch).await?;
    let applied_alone = apply_one_by_one(&t.single.world, &t.one_by_one).await?;
    assert_eq!(applied, applied_alone);
    assert_eq!(
        applied.iter().filter(|a| !**a).count(),
        t.copies.len(),
        "only the redelivered copy is not applied"
    );
    let batched_rows = t.batched.snapshot().await?;
    assert_eq!(batched_rows, t.single.snapshot().await?);

    // What the script meant, spelled out where the comparison alone would not show it.
    let e = |i: usize| t.batched.world.enrollment(t.batched.enrollments[i]);
    let (first, second, third) = (e(0).await?, e(1).await?, e(2).await?);
    assert_eq!(
        (first.status.as_str(), first.current_step),
        ("completed", 3)
    );
    assert_eq!(
        (second.status.as_str(), second.current_step),
        ("replied", 2)
    );
    assert_eq!((third.status.as_str(), third.current_step), ("replied", 1));
    assert_eq!(e(3).await?.status, "bounced");
    assert_eq!(e(4).await?.current_step, 2);
    assert_eq!(e(5).await?.status, "failed");
    let completed = batched_rows
        .iter()
        .filter(|r| r.contains("enrollment.completed"))
        .count();
    assert_eq!(completed, 1);

    // Delivered again as a t.batch, nothing changes.
    let again = apply_as_batch(&t.batched.world, &t.batch).await?;
    assert!(again.iter().all(|a| !a));
    assert_eq!(t.batched.snapshot().await?, batched_rows);
    Ok(())
}

#[tokio::test]
async fn replays_mixed_with_new_events_apply_only_the_new_ones() -> anyhow::Result<()> {
    let t = twins().await?;
    // The first half, then every event again with the second half among them: the first
    // half replays.
    let half = t.batch.len() / 2;
    let first = apply_as_batch(&t.batched.world, &t.batch[..half]).await?;
    assert!(first.iter().all(|a| *a));
    let second = apply_as_batch(&t.batched.world, &t.batch).await?;
    let expected: Vec<bool> = (0..t.batch.len())
        .map(|i| i >= half && !t.copies.iter().any(|&(copy, _)| copy == i))
        .collect();
    assert_eq!(second, expected);
    apply_one_by_one(&t.single.world, &t.one_by_one).await?;
    assert_eq!(t.batched.snapshot().await?, t.single.snapshot().await?);
    Ok(())
}

#[tokio::test]
async fn statistics_count_each_outcome_once_per_message_across_statements() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let world = dispatched(now).await?;
    let insert = |rows: &[(usize, &str, Option<bool>)]| {
        let values: Vec<String> = rows
            .iter()
            .map(|(i, event_type, is_bot)| {
                let bot = is_bot.map_or("NULL".to_owned(), |b| b.to_string());
                format!(
                    "(gen_random_uuid(), '{}', '{}', '{}', '{event_type}', now(), {bot})",
                    world.world.workspace_id, world.messages[*i], world.enrollments[*i]
                )
            })
            .collect();
        format!(
            "INSERT INTO events (id, workspace_id, message_id, enrollment_id, event_type, \
                                 occurred_at, is_bot) VALUES {}",
            values.join(", ")
        )
    };
    // One statement bringing a message's first opens twice over, a bot's, and a sent.
    world
        .world
        .exec(&insert(&[
            (0, "opened", Some(false)),
            (0, "opened", Some(false)),
            (0, "opened", Some(true)),
            (1, "opened", None),
            (0, "sent", None),
            (1, "clicked", Some(true)),
        ]))
        .await?;
    // A later statement: repeats count nothing, first ones do.
    world
        .world
        .exec(&insert(&[
            (0, "opened", Some(false)),
            (1, "opened", Some(false)),
            (1, "opened", Some(true)),
            (0, "sent", None),
            (2, "sent", None),
            (2, "sent", None),
            (3, "held", None),
        ]))
        .await?;
    // What each column should hold, recounted from the events: distinct messages per
    // outcome (and per kind of reader for opens and clicks).
    let recount = "SELECT count(DISTINCT (message_id, event_type, \
                          event_type IN ('opened', 'clicked') AND coalesce(is_bot, false))) AS n \
                     FROM events WHERE event_type = '{type}' AND {bot}";
    for (column, event_type, bot) in [
        ("sent", "sent", "true"),
        ("opened_human", "opened", "NOT coalesce(is_bot, false)"),
        ("opened_bot", "opened", "coalesce(is_bot, false)"),
        ("clicked_human", "clicked", "NOT coalesce(is_bot, false)"),
        ("clicked_bot", "clicked", "coalesce(is_bot, false)"),
    ] {
        let want = world
            .world
            .count(&recount.replace("{type}", event_type).replace("{bot}", bot))
            .await?;
        let got = world
            .world
            .count(&format!(
                "SELECT coalesce(sum({column}), 0)::int8 AS n FROM step_stats"
            ))
            .await?;
        assert_eq!(got, want, "{column}");
    }
    // Spelled out for the ones the statements above were built for.
    let got = async |column: &str| {
        world
            .world
            .count(&format!(
                "SELECT coalesce(sum({column}), 0)::int8 AS n FROM step_stats"
            ))
            .await
    };
    assert_eq!(got("opened_human").await?, 2, "messages 0 and 1, once each");
    assert_eq!(got("opened_bot").await?, 2);
    assert_eq!(got("sent").await?, 2, "messages 0 and 2");
    Ok(())
}
