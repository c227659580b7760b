//! One way to run a command: echo it, run it, fail with context.

use std::process::{Command, Output};

use anyhow::{Context as _, bail};

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` with inherited stdio; fail unless it exits 0.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let line = describe(cmd);
    eprintln!("xtask: $ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {line:?}"))?;
    if !status.success() {
        bail!("{line:?} failed: {status}");
    }
    Ok(())
}

/// Run `cmd` quietly and return its output, whatever the exit status;
/// `None` if it could not be started (e.g. not installed).
pub fn probe(cmd: &mut Command) -> Option<Output> {
    cmd.output().ok()
}
