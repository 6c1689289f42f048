//! The statements the apply of events is built on (`domain::db::progress`): what the lock of a
//! batch's enrollments returns, locks and how it is planned, and the thread's mailbox fixed
//! by a first send.

use std::sync::Arc;

use chrono::TimeDelta;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::clock::{Clock, ManualClock};
use domain::db::progress;
use scheduler::dispatch::Dispatcher;
use scheduler::outcomes;
use uuid::Uuid;

use crate::outcomes::{envelope, sent, webhooks};
use crate::world::{World, at};

/// Whether `sql` fails at once on `conn` because another transaction holds a lock it needs.
async fn lock_is_held(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<bool> {
    match diesel::sql_query(sql).execute(conn).await {
        Ok(_) => Ok(false),
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("could not obtain lock") =>
        {
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn the_lock_returns_each_enrollment_with_its_contact_and_sequence_in_id_order()
-> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let ids = world.enroll(5, now).await?;
    world
        .exec(&format!(
            "UPDATE contacts SET timezone = 'Europe/Paris' \
              WHERE id = (SELECT contact_id FROM enrollments WHERE id = '{}')",
            ids[2]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE sequences SET stop_on_auto_reply = true, business_days_only = true \
              WHERE id = '{}'",
            world.sequence_id
        ))
        .await?;
    let mut asked: Vec<Uuid> = ids.iter().rev().copied().collect();
    asked.push(Uuid::now_v7());

    let mut holder = world.conn().await?;
    let mut other = world.conn().await?;
    diesel::sql_query("BEGIN").execute(&mut holder).await?;
    let locked = progress::lock_enrollments(&mut holder, &asked).await?;

    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(
        locked.iter().map(|e| e.id).collect::<Vec<_>>(),
        sorted,
        "the existing ones, in id order"
    );
    for enrollment in &locked {
        let contact = enrollment.contact_id;
        assert_eq!(
            world
                .count(&format!(
                    "SELECT count(*) AS n FROM enrollments e JOIN contacts c ON c.id = '{contact}' \
                      WHERE e.id = '{}' AND e.contact_id = c.id AND c.email = '{}' \
                        AND e.sequence_id = '{}' AND e.workspace_id = '{}'",
                    enrollment.id, enrollment.email, world.sequence_id, world.workspace_id
                ))
                .await?,
            1,
            "{enrollment:?}"
        );
        assert_eq!(enrollment.current_step, 1);
        assert_eq!(enrollment.status, "active");
        assert!(enrollment.stop_on_reply && enrollment.stop_on_auto_reply);
        let window = &enrollment.window;
        assert_eq!(window.send_days, vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(window.window_start.to_string(), "09:00:00");
        assert_eq!(window.window_end.to_string(), "17:00:00");
        assert_eq!(window.sequence_timezone, "UTC");
        assert!(!window.use_contact_timezone);
        assert!(window.business_days_only);
        let zone = (enrollment.id == ids[2]).then(|| "Europe/Paris".to_owned());
        assert_eq!(window.contact_timezone, zone, "{enrollment:?}");
    }

    // The enrollments are locked against any writer, a key-share lock included (what every
    // delete reaching them takes first); their contacts and sequence are not locked.
    let enrollment = ids[0];
    let contact = locked
        .iter()
        .find(|e| e.id == enrollment)
        .map(|e| e.contact_id)
        .ok_or_else(|| anyhow::anyhow!("enrollment not locked"))?;
    assert!(
        lock_is_held(
            &mut other,
            &format!("SELECT 1 FROM enrollments WHERE id = '{enrollment}' FOR KEY SHARE NOWAIT")
        )
        .await?
    );
    assert!(
        !lock_is_held(
            &mut other,
            &format!("SELECT 1 FROM contacts WHERE id = '{contact}' FOR UPDATE NOWAIT")
        )
        .await?
    );
    assert!(
        !lock_is_held(
            &mut other,
            &format!(
                "SELECT 1 FROM sequences WHERE id = '{}' FOR UPDATE NOWAIT",
                world.sequence_id
            )
        )
        .await?
    );
    diesel::sql_query("ROLLBACK").execute(&mut holder).await?;
    Ok(())
}

/// A batch's lock with 50,000 contacts: the contacts are found by key, never scanned,
/// whatever `random_page_cost` makes random reads cost (a plain join hashed the whole table
/// at the default of 4).
#[tokio::test]
async fn the_lock_finds_contacts_by_key_at_any_page_cost() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let ids = world.enroll(50_000, now).await?;
    world.exec("ANALYZE").await?;
    let batch: Vec<Uuid> = ids.iter().step_by(147).copied().collect();
    assert!(batch.len() >= 340);

    let mut conn = world.conn().await?;
    for cost in ["4", "1.1"] {
        diesel::sql_query(format!("SET random_page_cost = {cost}"))
            .execute(&mut conn)
            .await?;
        let plan = progress::explain_lock_enrollments(&mut conn, &batch).await?;
        assert!(
            plan.contains("contacts_pkey") && plan.contains("enrollments_pkey"),
            "at random_page_cost {cost}, the lock does not look enrollments and contacts up \
             by key:\n{plan}"
        );
        for table in ["enrollments", "contacts"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table} ")),
                "at random_page_cost {cost}, the lock scans {table}:\n{plan}"
            );
        }
    }
    Ok(())
}

/// The first send fixes the thread's mailbox: the mailbox of the enrollment's first message
/// by step order, whether the message sent is that one (the apply passes its mailbox) or a
/// later one (the statement looks the first one up).
#[tokio::test]
async fn the_thread_mailbox_is_the_first_messages_whichever_is_sent() -> anyhow::Result<()> {
    let world = World::new(2, 100, &[(0, 0, 0), (1, 0, 0), (1, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let ids = world.enroll(2, now).await?;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, 2);
    let (first_sent, later_sent) = (ids[0], ids[1]);
    let [a, b] = [world.mailboxes[0], world.mailboxes[1]];

    // Its first message, from mailbox b, is what is sent.
    let first = world.messages_of(first_sent).await?.remove(0).id;
    world
        .exec(&format!(
            "UPDATE messages SET mailbox_id = '{b}' WHERE id = '{first}'"
        ))
        .await?;
    world.sent_by_worker(&[first], now).await?;

    // Its first message went from mailbox a but the enrollment, at step 2 without a thread
    // mailbox (as after its mailbox was lost), now sends step 2 from mailbox b.
    let earlier = world.messages_of(later_sent).await?.remove(0).id;
    let later = Uuid::now_v7();
    world
        .exec(&format!(
            "UPDATE messages SET mailbox_id = '{a}' WHERE id = '{earlier}'"
        ))
        .await?;
    world
        .exec(&format!(
            "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                                   contact_id, mailbox_id, status, attempts, scheduled_at) \
             SELECT '{later}', workspace_id, enrollment_id, '{}', 2, contact_id, '{b}', \
                    'queued', 1, scheduled_at \
               FROM messages WHERE id = '{earlier}'",
            world.steps[1]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE enrollments SET current_step = 2, mailbox_id = NULL WHERE id = '{later_sent}'"
        ))
        .await?;
    world.sent_by_worker(&[later], now).await?;

    let sent_at = now + TimeDelta::minutes(1);
    let batch = [
        envelope(&world, sent_at, sent(first, first_sent, 1)),
        envelope(&world, sent_at, sent(later, later_sent, 2)),
    ];
    let mut conn = world.conn().await?;
    let outcomes = conn
        .transaction(async |tx| outcomes::apply_batch(tx, &batch, &webhooks(), None).await)
        .await?;
    assert!(outcomes.iter().all(|o| o.applied), "{outcomes:?}");

    let row = world.enrollment(first_sent).await?;
    assert_eq!((row.current_step, row.mailbox_id), (2, Some(b)));
    let row = world.enrollment(later_sent).await?;
    assert_eq!((row.current_step, row.mailbox_id), (3, Some(a)));
    Ok(())
}
