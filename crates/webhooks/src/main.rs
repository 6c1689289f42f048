use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("webhooks", |c| c.webhooks.admin_bind, webhooks::serve)
}
