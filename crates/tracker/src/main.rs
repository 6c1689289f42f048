use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("tracker", tracker::serve)
}
