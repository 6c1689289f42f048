use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("sender-worker", sender_worker::serve)
}
