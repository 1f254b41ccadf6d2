//! Local clusters: one controller and N engine processes on this machine, like stock
//! `ipcluster start` with the local launchers.
//!
//! A *supervisor* owns the processes (foreground `oxipp start`, or a background copy of it
//! with `--daemonize`), reports engines that die, and stops everything on SIGTERM/SIGINT. What
//! runs is recorded in the cluster file `<profile>/security/cluster-<id>.json` in stock's
//! `Cluster.to_dict()` shape, so `oxipp list`/`stop`/`engines`/`clean` and stock's
//! `ipcluster list` and `ipp.Cluster.from_file()` all find it.

pub mod cluster_file;
pub mod layout;
pub mod process;
pub mod registered;
pub mod supervisor;
