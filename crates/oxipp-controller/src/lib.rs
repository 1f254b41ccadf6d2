//! The oxipp controller (stub while the real one is written).

/// Runs the controller with ipcontroller-style arguments (`--profile=x --ping=250 ...`) and
/// returns the process exit code. Both the `oxipp controller` CLI and `python -m
/// oxipp.controller` call this.
pub fn main_with_args(args: &[String]) -> i32 {
    let _ = args;
    eprintln!("oxipp controller: not implemented yet");
    1
}
