//! `/api/v1` routes, each documented in the OpenAPI spec through paperclip.

mod api_keys;
mod contacts;
mod contacts_import;
mod enroll;
mod enrollments;
mod health;
mod mailboxes;
mod messages;
mod sequences;
mod stats;
mod suppressions;
mod workspaces;

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
            .configure(suppressions::configure),
    );
}
