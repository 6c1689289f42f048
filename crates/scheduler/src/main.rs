use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("scheduler", |c| c.scheduler.admin_bind, scheduler::serve)
}
