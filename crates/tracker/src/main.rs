use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("tracker", |c| c.tracker.bind, tracker::serve)
}
