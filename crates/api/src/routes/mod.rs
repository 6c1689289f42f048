//! `/api/v1` routes, each documented in the OpenAPI spec through paperclip.

mod api_keys;
mod contacts;
mod contacts_import;
mod health;
mod suppressions;
mod workspaces;

use paperclip::actix::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .configure(health::configure)
            .configure(workspaces::configure)
            .configure(api_keys::configure)
            .configure(contacts::configure)
            .configure(suppressions::configure),
    );
}
