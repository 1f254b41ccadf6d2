//! The `oxipp` executable end to end: exit codes and output of the parts that do not need a
//! running controller.

use std::process::Command;

fn oxipp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oxipp"))
        .args(args)
        .output()
        .expect("run oxipp")
}

#[test]
fn version() {
    let out = oxipp(&["--version"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim(),
        format!("oxipp {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_the_controller_subcommand() {
    let out = oxipp(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("controller"), "{stdout}");
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    let out = oxipp(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no-such-command"));
    // no subcommand at all: help on stderr, usage error
    assert_eq!(oxipp(&[]).status.code(), Some(2));
}
