//! Assembles sequence responses from rows: steps and rotation pools of a whole page are
//! loaded with one query each.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::model::{DAY_NAMES, SendingWindowOut, Sequence, Step, Variant};
use super::warnings::{TemplateWarning, Templates};
use crate::error::ApiError;

pub async fn one(
    conn: &mut AsyncPgConnection,
    sequence: domain::db::sequences::Sequence,
) -> Result<Sequence, ApiError> {
    many(conn, vec![sequence])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("sequence vanished while loading")))
}

pub async fn many(
    conn: &mut AsyncPgConnection,
    sequences: Vec<domain::db::sequences::Sequence>,
) -> Result<Vec<Sequence>, ApiError> {
    let Some(workspace_id) = sequences.first().map(|s| s.workspace_id) else {
        return Ok(Vec::new());
    };
    let ids: Vec<Uuid> = sequences.iter().map(|s| s.id).collect();
    let mut steps: HashMap<Uuid, Vec<Step>> = HashMap::new();
    for step in domain::db::steps::live_for(conn, &ids).await? {
        steps
            .entry(step.sequence_id)
            .or_default()
            .push(step_out(step));
    }
    let mut pools: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (sequence_id, mailbox_id) in domain::db::sequences::mailbox_ids(conn, &ids).await? {
        pools.entry(sequence_id).or_default().push(mailbox_id);
    }
    let mut loaded: Vec<Sequence> = sequences
        .into_iter()
        .map(|s| Sequence {
            steps: steps.remove(&s.id).unwrap_or_default(),
            warnings: Vec::new(),
            mailbox_ids: pools.remove(&s.id).unwrap_or_default(),
            sending_window: SendingWindowOut {
                days: s
                    .send_days
                    .iter()
                    .filter_map(|d| DAY_NAMES.get(usize::try_from(*d - 1).ok()?))
                    .map(|d| (*d).to_owned())
                    .collect(),
                start_time: s.window_start.format("%H:%M").to_string(),
                end_time: s.window_end.format("%H:%M").to_string(),
                timezone: s.timezone,
                use_contact_timezone: s.use_contact_timezone,
                business_days_only: s.business_days_only,
            },
            id: s.id,
            name: s.name,
            status: s.status,
            open_tracking_enabled: s.open_tracking_enabled,
            click_tracking_enabled: s.click_tracking_enabled,
            track_url_text_links: s.track_url_text_links,
            stop_on_reply: s.stop_on_reply,
            stop_on_auto_reply: s.stop_on_auto_reply,
            unsubscribe_link: s.unsubscribe_link,
            tracking_domain: s.tracking_domain,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
        .collect();
    attach_warnings(conn, workspace_id, &mut loaded).await?;
    Ok(loaded)
}

/// Fills in the `warnings` of the sequences and of their steps, with one query.
async fn attach_warnings(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    sequences: &mut [Sequence],
) -> Result<(), ApiError> {
    let mut templates = Templates::default();
    for (s, sequence) in sequences.iter().enumerate() {
        for (i, step) in sequence.steps.iter().enumerate() {
            for (field, source) in step_templates(step) {
                templates.add((s, i), field, source);
            }
        }
    }
    for ((s, i), warning) in templates.warnings(conn, workspace_id).await? {
        let Some(sequence) = sequences.get_mut(s) else {
            continue;
        };
        sequence.warnings.push(TemplateWarning {
            field: format!("steps[{i}].{}", warning.field),
            ..warning.clone()
        });
        if let Some(step) = sequence.steps.get_mut(i) {
            step.warnings.push(warning);
        }
    }
    Ok(())
}

/// A step's templates by field: subject, content, each variant's.
fn step_templates(step: &Step) -> Vec<(String, &str)> {
    let mut fields = vec![
        ("subject".to_owned(), step.subject.as_str()),
        ("content".to_owned(), step.content.as_str()),
    ];
    for (j, variant) in step.variants.iter().enumerate() {
        fields.push((format!("variants[{j}].subject"), variant.subject.as_str()));
        fields.push((format!("variants[{j}].content"), variant.content.as_str()));
    }
    fields
}

/// One step as the steps endpoints answer it, with its warnings.
pub async fn step(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    step: domain::db::steps::Step,
) -> Result<Step, ApiError> {
    let mut step = step_out(step);
    let mut templates = Templates::default();
    for (field, source) in step_templates(&step) {
        templates.add((), field, source);
    }
    step.warnings = templates
        .warnings(conn, workspace_id)
        .await?
        .into_iter()
        .map(|((), warning)| warning)
        .collect();
    Ok(step)
}

pub fn step_out(step: domain::db::steps::Step) -> Step {
    Step {
        id: step.id,
        step_order: step.order_key,
        subject: step.subject,
        content: step.content,
        wait_days: step.wait_days,
        wait_hours: step.wait_hours,
        wait_minutes: step.wait_minutes,
        thread_with_previous: step.thread_with_previous,
        variants: serde_json::from_value::<Vec<Variant>>(step.variants).unwrap_or_default(),
        warnings: Vec::new(),
        created_at: step.created_at,
        updated_at: step.updated_at,
    }
}
