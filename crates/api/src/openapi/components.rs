//! Named schemas for nested types.
//!
//! paperclip names only the top-level body and response types and inlines every type nested
//! in them, so `SendingWindow` would appear as an anonymous copy in `CreateSequence` and
//! another in `UpdateSequence`. Code generators would then invent a type per copy, and a
//! refinement would have to be made to each copy. So every named type (the definitions plus
//! the nested types listed in [`nested`]) becomes a component, and each inline copy of it
//! (the same schema, up to the description a field's doc comment gives it) a reference.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use paperclip::v2::schema::Apiv2Schema;
use serde_json::{Value, json};

use crate::routes::{api_keys, sequences::model, stats, workspaces};
use crate::routes::{contacts, contacts_import, enroll, enrollments, mailboxes, messages};

/// The nested types of the API, named as their Rust types.
fn nested() -> Result<Vec<(String, Value)>> {
    [
        named::<crate::error::FieldError>(),
        named::<workspaces::Workspace>(),
        named::<api_keys::ApiKey>(),
        named::<model::SendingWindow>(),
        named::<model::SendingWindowOut>(),
        named::<model::Variant>(),
        named::<contacts::ContactInput>(),
        named::<contacts::RejectedItem>(),
        named::<contacts_import::RejectedRow>(),
        named::<enroll::Skipped>(),
        named::<enrollments::TimelineEvent>(),
        named::<messages::Message>(),
        named::<stats::EnrollmentCounts>(),
        named::<stats::Counts>(),
        named::<stats::StepStats>(),
        named::<stats::HumanBot>(),
        named::<stats::Rates>(),
        named::<mailboxes::Security>(),
        named::<mailboxes::SettableStatus>(),
        named::<mailboxes::MailboxStatus>(),
        named::<mailboxes::SmtpSettings>(),
        named::<mailboxes::ImapSettings>(),
        named::<mailboxes::WarmupSettings>(),
        named::<mailboxes::SmtpUpdate>(),
        named::<mailboxes::ImapUpdate>(),
        named::<mailboxes::SmtpView>(),
        named::<mailboxes::ImapView>(),
        named::<mailboxes::InboxWatchView>(),
        named::<mailboxes::WarmupView>(),
        named::<mailboxes::CheckResult>(),
        named::<mailboxes::MailboxAuth>(),
        named::<mailboxes::AuthType>(),
        named::<mailboxes::AuthStatus>(),
    ]
    .into_iter()
    .collect()
}

/// `T`'s schema as paperclip inlines it, in OpenAPI 3 form.
fn named<T: Apiv2Schema>() -> Result<(String, Value)> {
    let Some(name) = T::name() else {
        bail!(
            "a nested type without a name: {}",
            std::any::type_name::<T>()
        );
    };
    let mut schema = T::schema_with_ref();
    schema.remove_refs();
    Ok((
        name,
        super::v3::convert_schema(&serde_json::to_value(schema)?),
    ))
}

/// Adds the nested types to `components.schemas` and replaces every inline copy of a named
/// schema by a reference to it.
pub fn hoist(doc: &mut Value) -> Result<()> {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("no components.schemas"))?;
    for (name, schema) in nested()? {
        if let Some(existing) = schemas.get(&name)
            && without_description(existing) != without_description(&schema)
        {
            bail!("two different schemas are named {name}");
        }
        schemas.insert(name, schema);
    }
    // Largest first: a type is replaced before the types inside it, so its copies are still
    // whole when it is compared with them.
    let mut named: Vec<(String, Value)> = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), schema.clone()))
        .collect();
    named.sort_by_key(|(_, schema)| std::cmp::Reverse(schema.to_string().len()));
    let mut shapes: BTreeMap<String, &str> = BTreeMap::new();
    for (name, schema) in &named {
        if let Some(other) = shapes.insert(without_description(schema).to_string(), name) {
            bail!("{name} and {other} have the same schema; one reference cannot tell them apart");
        }
    }
    for (name, schema) in &named {
        let shape = without_description(schema);
        let own_description = schema.get("description");
        let reference = format!("#/components/schemas/{name}");
        for (other, component) in doc["components"]["schemas"]
            .as_object_mut()
            .into_iter()
            .flatten()
        {
            if other == name {
                replace_below(component, &shape, own_description, &reference);
            } else {
                replace(component, &shape, own_description, &reference);
            }
        }
        for item in doc["paths"].as_object_mut().into_iter().flatten() {
            replace(item.1, &shape, own_description, &reference);
        }
    }
    Ok(())
}

fn without_description(schema: &Value) -> Value {
    let mut copy = schema.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("description");
    }
    copy
}

fn replace(value: &mut Value, shape: &Value, description: Option<&Value>, reference: &str) {
    if value.is_object() && without_description(value) == *shape {
        *value = match value.get("description").filter(|d| Some(*d) != description) {
            // A field's own description stays beside the reference (3.0 ignores siblings of
            // `$ref`, hence `allOf`).
            Some(field_description) => json!({
                "allOf": [{"$ref": reference}],
                "description": field_description,
            }),
            None => json!({"$ref": reference}),
        };
        return;
    }
    replace_below(value, shape, description, reference);
}

fn replace_below(value: &mut Value, shape: &Value, description: Option<&Value>, reference: &str) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                replace(child, shape, description, reference);
            }
        }
        Value::Array(items) => {
            for child in items {
                replace(child, shape, description, reference);
            }
        }
        _ => {}
    }
}
