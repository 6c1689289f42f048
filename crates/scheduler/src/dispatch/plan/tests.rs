use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveTime, Utc};
use domain::db::dispatch::{DueEnrollment, MailboxForDispatch, WindowColumns};
use domain::db::steps::Step;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use uuid::Uuid;

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("bad instant {s}: {e}"))
}

fn time(h: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_else(|| panic!("bad hour {h}"))
}

struct Fixture {
    sequence_id: Uuid,
    steps: HashMap<Uuid, Vec<Step>>,
    pools: HashMap<Uuid, Vec<Uuid>>,
    mailboxes: HashMap<Uuid, MailboxState>,
    suppressed: HashSet<(Uuid, String)>,
    now: DateTime<Utc>,
}

impl Fixture {
    /// Mailboxes as (daily limit, used today, min interval seconds), in pool order.
    fn new(now: &str, mailboxes: &[(i32, i32, i32)]) -> Self {
        let now = at(now);
        let sequence_id = Uuid::now_v7();
        let step = |order: i32| Step {
            id: Uuid::now_v7(),
            sequence_id,
            step_order: order,
            order_key: order,
            subject: "s".to_owned(),
            content: "c".to_owned(),
            wait_days: 0,
            wait_hours: 0,
            wait_minutes: 0,
            thread_with_previous: false,
            variants: json!([]),
            created_at: now,
            updated_at: now,
        };
        let mut states = HashMap::new();
        let mut pool = Vec::new();
        for (limit, used, interval) in mailboxes {
            let id = Uuid::now_v7();
            let mailbox = MailboxForDispatch {
                id,
                email: format!("m-{id}@example.com"),
                status: "active".to_owned(),
                daily_limit: *limit,
                warmup_enabled: false,
                warmup_start_limit: 5,
                warmup_daily_increase: 2,
                warmup_started_on: None,
                min_interval_seconds: *interval,
                max_jitter_seconds: 0,
                timezone: "UTC".to_owned(),
                next_send_slot_at: None,
            };
            states.insert(id, MailboxState::new(mailbox, now, *used));
            pool.push(id);
        }
        Self {
            sequence_id,
            steps: HashMap::from([(sequence_id, vec![step(1), step(2)])]),
            pools: HashMap::from([(sequence_id, pool)]),
            mailboxes: states,
            suppressed: HashSet::new(),
            now,
        }
    }

    fn due(&self, mailbox_id: Option<Uuid>, current_step: i32) -> DueEnrollment {
        DueEnrollment {
            id: Uuid::now_v7(),
            workspace_id: Uuid::nil(),
            sequence_id: self.sequence_id,
            contact_id: Uuid::now_v7(),
            mailbox_id,
            current_step,
            email: format!("{}@example.com", Uuid::now_v7()),
            contact_status: "active".to_owned(),
            window: WindowColumns {
                contact_timezone: None,
                send_days: vec![1, 2, 3, 4, 5, 6, 7],
                window_start: time(9),
                window_end: time(17),
                sequence_timezone: "UTC".to_owned(),
                use_contact_timezone: false,
                business_days_only: false,
            },
        }
    }

    fn plan(&self, due: &[DueEnrollment]) -> Plan {
        plan(
            &Inputs {
                now: self.now,
                steps: &self.steps,
                suppressed: &self.suppressed,
                pools: &self.pools,
                mailboxes: &self.mailboxes,
            },
            due,
            &mut StdRng::seed_from_u64(7),
        )
    }

    fn pool(&self) -> Vec<Uuid> {
        self.pools[&self.sequence_id].clone()
    }
}

fn sends(plan: &Plan) -> Vec<&Send> {
    plan.decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Send(send) => Some(send),
            _ => None,
        })
        .collect()
}

#[test]
fn first_steps_go_to_the_least_used_mailbox_first() {
    let f = Fixture::new(
        "2026-03-02T10:00:00Z",
        &[(30, 10, 0), (30, 0, 0), (30, 5, 0)],
    );
    let pool = f.pool();
    let due: Vec<_> = (0..15).map(|_| f.due(None, 1)).collect();

    let plan = f.plan(&due);

    // Loads of 10, 0 and 5 level out at 10 each: the busiest mailbox gets nothing.
    let mut per_mailbox: HashMap<Uuid, i32> = HashMap::new();
    for send in sends(&plan) {
        *per_mailbox.entry(send.mailbox_id).or_default() += 1;
    }
    assert_eq!(per_mailbox.get(&pool[0]), None);
    assert_eq!(per_mailbox.get(&pool[1]), Some(&10));
    assert_eq!(per_mailbox.get(&pool[2]), Some(&5));
    assert_eq!(plan.asks[&pool[1]].want, 10);
    assert_eq!(plan.asks[&pool[2]].want, 5);
}

#[test]
fn with_every_mailbox_full_the_step_moves_to_the_next_days_opening() {
    let f = Fixture::new("2026-03-02T10:00:00Z", &[(30, 30, 0), (30, 29, 0)]);
    let due: Vec<_> = (0..3).map(|_| f.due(None, 1)).collect();

    let plan = f.plan(&due);

    assert_eq!(sends(&plan).len(), 1);
    let deferred: Vec<DateTime<Utc>> = plan
        .decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Defer { until, .. } => Some(*until),
            _ => None,
        })
        .collect();
    assert_eq!(deferred, vec![at("2026-03-03T09:00:00Z"); 2]);
}

#[test]
fn a_follow_up_keeps_its_mailbox_even_when_another_is_emptier() {
    let f = Fixture::new("2026-03-02T10:00:00Z", &[(30, 20, 0), (30, 0, 0)]);
    let busy = f.pool()[0];
    let plan = f.plan(&[f.due(Some(busy), 2)]);
    let sent = sends(&plan);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].mailbox_id, busy);
    assert_eq!(sent[0].step_order, 2);
}

#[test]
fn a_spaced_mailbox_takes_one_send_per_round_and_moves_its_slot() {
    let f = Fixture::new("2026-03-02T10:00:00Z", &[(100, 0, 600)]);
    let mailbox = f.pool()[0];
    let due: Vec<_> = (0..3).map(|_| f.due(None, 1)).collect();

    let plan = f.plan(&due);

    assert_eq!(sends(&plan).len(), 1);
    // 600 s beats the window's spread (8 h over 100 sends = 288 s).
    assert_eq!(
        plan.asks[&mailbox],
        Ask {
            want: 1,
            next_slot: Some(at("2026-03-02T10:10:00Z"))
        }
    );
}

#[test]
fn spacing_stretches_to_spread_a_small_limit_over_the_window() {
    let f = Fixture::new("2026-03-02T10:00:00Z", &[(16, 0, 60)]);
    let mailbox = f.pool()[0];
    let plan = f.plan(&[f.due(None, 1)]);
    // 8 hours over 16 sends: one every 30 minutes, not every minute.
    assert_eq!(
        plan.asks[&mailbox].next_slot,
        Some(at("2026-03-02T10:30:00Z"))
    );
}

#[test]
fn suppressed_unsubscribed_and_finished_enrollments_are_not_sent() {
    let mut f = Fixture::new("2026-03-02T10:00:00Z", &[(30, 0, 0)]);
    let suppressed = f.due(None, 1);
    f.suppressed
        .insert((suppressed.workspace_id, suppressed.email.clone()));
    let mut unsubscribed = f.due(None, 1);
    unsubscribed.contact_status = "unsubscribed".to_owned();
    let past_last_step = f.due(None, 3);

    let plan = f.plan(&[
        suppressed.clone(),
        unsubscribed.clone(),
        past_last_step.clone(),
    ]);

    assert_eq!(
        plan.decisions,
        vec![
            Decision::Stop {
                enrollment_id: suppressed.id,
                status: "stopped",
                reason: "suppressed"
            },
            Decision::Stop {
                enrollment_id: unsubscribed.id,
                status: "unsubscribed",
                reason: "contact_unsubscribed"
            },
            Decision::Complete {
                enrollment_id: past_last_step.id
            },
        ]
    );
}

#[test]
fn outside_the_window_nothing_is_asked_of_any_mailbox() {
    let f = Fixture::new("2026-03-02T07:00:00Z", &[(30, 0, 0)]);
    let due = f.due(None, 1);
    let plan = f.plan(std::slice::from_ref(&due));
    assert!(plan.asks.is_empty());
    assert_eq!(
        plan.decisions,
        vec![Decision::Defer {
            enrollment_id: due.id,
            until: at("2026-03-02T09:00:00Z")
        }]
    );
}

#[test]
fn variants_are_chosen_by_weight() {
    let variants = json!([{"weight": 1}, {"weight": 3}, {"weight": 0}]);
    let mut rng = StdRng::seed_from_u64(42);
    let mut counts = [0; 3];
    for _ in 0..4_000 {
        match choose_variant(&variants, &mut rng) {
            Some(0) => counts[0] += 1,
            Some(1) => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    assert_eq!(counts[2], 0);
    // Expected 1,000 and 3,000; a fair sampler stays well within 10 %.
    assert!((900..1_100).contains(&counts[0]), "{counts:?}");
    assert!((2_900..3_100).contains(&counts[1]), "{counts:?}");
    assert_eq!(choose_variant(&json!([]), &mut rng), None);
    assert_eq!(choose_variant(&json!([{"weight": 0}]), &mut rng), Some(0));
}
