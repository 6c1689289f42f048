//! Running an external program over an email, as tests do with the independent checkers
//! (dkimpy, SpamAssassin): the email on stdin, the verdict on stdout and the exit status.

use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt as _;

/// Runs `command` with `input` on its stdin and returns what it printed and how it ended.
/// The child is killed if the test stops waiting.
pub async fn pipe_through(
    command: &mut tokio::process::Command,
    input: &[u8],
) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    stdin.write_all(input).await?;
    drop(stdin);
    Ok(child.wait_with_output().await?)
}
