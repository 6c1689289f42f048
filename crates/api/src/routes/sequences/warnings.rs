//! Template variables no contact can fill. A variable without a fallback that is neither
//! built in nor an attribute any contact of the workspace has (or had) is most likely a typo
//! or a missing import column; emails to contacts without a value are held and their enrollments paused,
//! so saving such a template succeeds with a warning naming it. One query per response,
//! against the workspace's recorded attribute names.

use std::collections::BTreeSet;

use diesel_async::AsyncPgConnection;
use domain::templates::{BUILT_IN_VARIABLES, Template};
use paperclip::actix::Apiv2Schema;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

/// A variable of a template that no contact of the workspace can fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Apiv2Schema)]
pub struct TemplateWarning {
    /// The template's field, e.g. `steps[0].content`.
    pub field: String,
    /// The variable's name.
    pub variable: String,
    pub message: String,
}

/// Templates of a response, by the field each is at, and a key saying whose they are.
pub struct Templates<K> {
    fields: Vec<(K, String, BTreeSet<String>)>,
}

impl<K> Default for Templates<K> {
    fn default() -> Self {
        Self { fields: Vec::new() }
    }
}

impl<K: Clone> Templates<K> {
    /// Adds the template at `field`; one that does not parse has no variables to report.
    pub fn add(&mut self, key: K, field: String, source: &str) {
        let names: BTreeSet<String> = Template::parse(source)
            .map(|template| template.required_variables())
            .unwrap_or_default()
            .into_iter()
            .filter(|name| !BUILT_IN_VARIABLES.contains(&name.as_str()))
            .collect();
        if !names.is_empty() {
            self.fields.push((key, field, names));
        }
    }

    /// The warnings of every template added, in the order added, with their keys.
    pub async fn warnings(
        self,
        conn: &mut AsyncPgConnection,
        workspace_id: Uuid,
    ) -> Result<Vec<(K, TemplateWarning)>, ApiError> {
        let candidates: BTreeSet<String> = self
            .fields
            .iter()
            .flat_map(|(_, _, names)| names.iter().cloned())
            .collect();
        let candidates: Vec<String> = candidates.into_iter().collect();
        let known: BTreeSet<String> =
            domain::db::contacts::known_attribute_keys(conn, workspace_id, &candidates)
                .await?
                .into_iter()
                .collect();
        let mut warnings = Vec::new();
        for (key, field, names) in self.fields {
            for name in names.into_iter().filter(|name| !known.contains(name)) {
                warnings.push((
                    key.clone(),
                    TemplateWarning {
                        message: format!(
                            "`{name}` is neither a built-in variable nor an attribute of any \
                             contact in this workspace: an email to a contact without it is \
                             not sent and the contact's enrollment pauses"
                        ),
                        field: field.clone(),
                        variable: name,
                    },
                ));
            }
        }
        Ok(warnings)
    }
}
