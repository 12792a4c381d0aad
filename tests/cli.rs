//! The command line's own output: help, version and the bench table go to standard output, and
//! a reader that has gone away (`earshot --help | head -1`) ends nothing with a panic.

mod support;

use std::process::Stdio;

use support::*;

/// Runs earshot with its standard output on a pipe whose reader has already exited, as in
/// `earshot ARGS | true` when earshot writes after `true` is gone. Returns earshot's exit code
/// and standard error.
fn run_into_closed_pipe(args: &[&str]) -> (i32, String) {
    // The binary under test, as `earshot()` picks it (EARSHOT_TEST_BINARY or cargo's).
    let binary = earshot().get_program().to_owned();
    // The reader (`true`) is gone long before earshot writes its first byte, 0.5 s later.
    let script = r#"(sleep 0.5; exec "$@") | true; exit "${PIPESTATUS[0]}""#;
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(binary)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version_into_a_closed_pipe_exit_zero_without_a_panic() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["serve", "--help"],
        &["listen", "--help"],
        &["bench", "--help"],
    ] {
        let (code, stderr) = run_into_closed_pipe(args);
        assert_eq!(code, 0, "earshot {args:?} | true: {stderr}");
        assert!(!stderr.contains("panicked"), "earshot {args:?}: {stderr}");
    }
}

#[test]
fn a_bench_whose_table_reader_has_gone_still_writes_its_csv() {
    let server = Server::start(&["--source", "tone:"]);
    let dir = TempDir::new("cli-bench");
    let csv = dir.join("b.csv");
    let (code, stderr) = run_into_closed_pipe(&[
        "bench",
        &server.ws_url(),
        "--clients",
        "1",
        "--duration",
        "1",
        "--settle",
        "0.2",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let csv = std::fs::read_to_string(&csv).expect("the CSV is written");
    assert_eq!(csv.lines().count(), 2, "a header and one step:\n{csv}");
}
