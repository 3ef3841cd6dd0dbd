//! The `tilekit` binary writing into a pipe whose reader has gone (`tilekit list | head -1`):
//! the command ends quietly, without a panic message, with its own exit code.

use std::process::Command;

/// Runs `tilekit args…` with its standard output into a pipe whose reader exits at once; the
/// command starts writing only after a pause, so every write meets the closed pipe. Returns
/// the command's exit code and what it wrote to stderr.
fn into_a_closed_pipe(args: &[&str]) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"{ sleep 0.3; "$0" "$@"; echo "exit code $?" >&2; } | true"#)
        .arg(env!("CARGO_BIN_EXE_tilekit"))
        .args(args)
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (rest, code) = stderr
        .trim_end()
        .rsplit_once("exit code ")
        .unwrap_or_else(|| panic!("no exit code in {stderr:?}"));
    (code.parse().expect("a number"), rest.to_string())
}

#[test]
fn cli_output_into_a_closed_pipe_ends_quietly() {
    for args in [&["list"][..], &["--help"], &["help", "emit"]] {
        let (code, stderr) = into_a_closed_pipe(args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim(), "", "{args:?}");
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
}

#[test]
fn cli_usage_errors_exit_with_2_and_clap_messages() {
    let out = Command::new(env!("CARGO_BIN_EXE_tilekit"))
        .arg("frobnicate")
        .output()
        .expect("tilekit runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: unrecognized subcommand 'frobnicate'")
            && stderr.contains("Usage: tilekit"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
