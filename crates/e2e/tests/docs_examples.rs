//! The examples of README.md and docs/, run as written against the real platform: every
//! shell block that calls the API is run by bash against an api, scheduler and sender worker
//! running in this process, with GreenMail as the mail server. Only where things are (the
//! api's URL, the mail server's address, the key file) and the recipients (unique per run,
//! as GreenMail keeps every inbox) are substituted; each API call must answer 2xx.

mod platform;

use std::path::{Path, PathBuf};

use domain::testing::greenmail::{received, smtp_addr};
use domain::testing::poll_until;
use uuid::Uuid;

use crate::platform::{Platform, WAIT};

/// Marks an example written for the docker compose stack (its `.env`, Mailpit): `cargo xtask
/// containers` runs those against the stack, so they are left out here.
const COMPOSE_EXAMPLE: &str = "<!-- docker compose example:";

/// The fenced `sh` blocks of a Markdown file that call the API.
fn api_examples(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    let mut previous = "";
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```sh") => {
                if !previous.starts_with(COMPOSE_EXAMPLE) {
                    current = Some(String::new());
                }
            }
            (Some(block), "```") => {
                if block.contains("curl") && block.contains("/api/v1") {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
        if !line.trim().is_empty() {
            previous = line.trim_start();
        }
    }
    blocks
}

#[test]
fn compose_examples_are_left_to_the_compose_stack() {
    let markdown = "```sh\ncurl http://127.0.0.1:8080/api/v1/a\n```\n\n\
                    <!-- docker compose example: run elsewhere -->\n\
                    ```sh\ncurl http://127.0.0.1:8080/api/v1/b\n```\n";
    assert_eq!(
        api_examples(markdown),
        vec!["curl http://127.0.0.1:8080/api/v1/a\n"]
    );
}

fn documents() -> anyhow::Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            paths.push(path);
        }
    }
    Ok(paths)
}

#[test]
fn the_readme_has_an_api_example() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(documents()?[0].clone())?;
    let examples = api_examples(&readme);
    assert!(!examples.is_empty(), "no API example found in README.md");
    assert!(
        examples[0].contains(
            r#"{"name": "Welcome Sequence", "open_tracking_enabled": true, "click_tracking_enabled": true, "steps": [{"step_order": 0, "subject": "Welcome!", "content": "Hi {name}, welcome!", "wait_days": 0}]}"#
        ),
        "the README shows the seed's example as the seed wrote it"
    );
    Ok(())
}

#[tokio::test]
async fn every_api_example_in_the_docs_runs_as_written() -> anyhow::Result<()> {
    let platform = Platform::start().await?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("target/local"))?;
    std::fs::write(home.path().join("target/local/dev-api-key"), &platform.key)?;
    let smtp = smtp_addr()?;
    let mail_api = std::env::var("SEQ_TEST_MAIL_API")?;
    let recipient = format!("ada-{}@example.com", Uuid::now_v7().simple());

    let mut ran = 0;
    for document in documents()? {
        for example in api_examples(&std::fs::read_to_string(&document)?) {
            let script = example
                .replace("http://127.0.0.1:8080", &platform.api_url)
                .replace("http://127.0.0.1:58080", &mail_api)
                .replace(
                    r#""host": "127.0.0.1", "port": 53025"#,
                    &format!(r#""host": "{}", "port": {}"#, smtp.ip(), smtp.port()),
                )
                .replace("ada@example.com", &recipient);
            run(&script, home.path())
                .await
                .map_err(|e| e.context(format!("an example of {}", document.display())))?;
            ran += 1;
        }
    }
    assert!(ran > 0, "no example ran");

    // The README's example ends with the seed's email in the recipient's inbox, and the
    // sequence (one step) completed for them.
    let emails = poll_until(WAIT, "the example's email", || async {
        received(&recipient)
            .await
            .ok()
            .filter(|all| !all.is_empty())
    })
    .await?;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].contains("Subject: Welcome!"), "{}", emails[0]);
    assert!(
        emails[0].contains("Hi Ada Lovelace, welcome!"),
        "`{{name}}` is the full name: {}",
        emails[0]
    );
    let completed = "SELECT count(*) AS n FROM enrollments WHERE status = 'completed'";
    poll_until(WAIT, "the enrollment completed", || async {
        matches!(platform.db.count(completed).await, Ok(1)).then_some(())
    })
    .await?;
    platform.stop().await
}

/// Runs `script` with bash in `dir`; every call to the API must answer 2xx.
async fn run(script: &str, dir: &Path) -> anyhow::Result<()> {
    let strict = format!(
        "set -euo pipefail\n\
         curl() {{ case \"$*\" in *'/api/v1/'*) command curl --fail-with-body \"$@\";; \
         *) command curl \"$@\";; esac; }}\n{script}"
    );
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&strict)
        .current_dir(dir)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "the example failed ({}):\n{script}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
