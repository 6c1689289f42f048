use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run(
        "sender-worker",
        |c| c.sender_worker.admin_bind,
        sender_worker::serve,
    )
}
