use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("inbox-watcher", tracker::inbox::serve)
}
