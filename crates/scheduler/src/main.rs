use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("scheduler", scheduler::serve)
}
