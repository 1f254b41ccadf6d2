//! oxipp's cluster side: the `oxipp` command line and (in later issues) the launchers that start
//! controllers and engines locally, under MPI, over SSH or through batch systems.
//!
//! The command line is a library function, [`cli_main`], rather than code in a binary, because it
//! has two front doors that must behave identically: the `oxipp` executable (`src/main.rs`) and
//! the Python package (`python -m oxipp …`, the `oxipp` console script, `python -m
//! oxipp.controller …`), which calls it through the `oxipp._oxipp` extension module.

pub mod cli;
pub mod local;

pub use cli::cli_main;
