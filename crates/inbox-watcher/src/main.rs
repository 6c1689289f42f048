use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run(
        "inbox-watcher",
        |c| c.inbox_watcher.admin_bind,
        inbox_watcher::serve,
    )
}
