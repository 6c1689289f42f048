use std::process::ExitCode;

fn main() -> ExitCode {
    // `api openapi` prints the OpenAPI document; it needs no configuration or database.
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        return match api::openapi::document_text() {
            Ok(document) => {
                print!("{document}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("api: cannot generate the OpenAPI document: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    domain::service::cli::run("api", |c| c.api.bind, api::serve)
}
