use std::process::ExitCode;

fn main() -> ExitCode {
    domain::service::cli::run("api", api::serve)
}
