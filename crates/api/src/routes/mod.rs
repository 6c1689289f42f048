//! `/api/v1` routes, each documented in the OpenAPI spec through paperclip.

pub(crate) mod api_keys;
pub(crate) mod contacts;
pub(crate) mod contacts_import;
pub(crate) mod enroll;
pub(crate) mod enrollments;
pub(crate) mod health;
pub(crate) mod mailboxes;
pub(crate) mod messages;
pub(crate) mod sequences;
pub(crate) mod stats;
pub(crate) mod suppressions;
pub(crate) mod webhooks;
pub(crate) mod workspaces;

use paperclip::actix::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .configure(health::configure)
            .configure(workspaces::configure)
            .configure(api_keys::configure)
            .configure(sequences::configure)
            .configure(enrollments::configure)
            .configure(messages::configure)
            .configure(stats::configure)
            .configure(contacts::configure)
            .configure(mailboxes::configure)
            .configure(suppressions::configure)
            .configure(webhooks::configure),
    );
}
