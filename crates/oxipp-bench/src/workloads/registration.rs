//! `engines`: how long a controller takes to register a flood of engines.
//!
//! Stock ipyparallel struggles past ~1,000 engines started at once (spec §10, #570/#700); this
//! scenario starts them all at the same instant and measures until the Hub has announced every
//! one, which includes the first heartbeat round trip that completes a registration.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::bring_up;
use crate::client::SimClient;
use crate::fleet::FleetOptions;
use crate::procfs;

pub fn run(
    client: &SimClient,
    opts: &FleetOptions,
    timeout: Duration,
    hold: Duration,
    pid: Option<u32>,
) -> Result<Value> {
    let mut up = bring_up(client, opts, timeout)?;
    let usage = pid.and_then(procfs::usage);
    if !hold.is_zero() {
        eprintln!(
            "oxipp-sim: holding {} engines for {:.0} s",
            up.report.registered,
            hold.as_secs_f64()
        );
        std::thread::sleep(hold);
    }
    up.fleet.stop();
    let mut out = up.report.to_json();
    out["ok"] = json!(up.report.elapsed.is_some());
    out["fleet"] = up.fleet.stats.to_json();
    out["controller_after_registration"] = json!(usage);
    if up.report.elapsed.is_none() {
        out["error"] = json!(format!(
            "{}/{} engines registered within {:.0} s",
            up.report.registered,
            opts.engines,
            timeout.as_secs_f64()
        ));
    }
    Ok(out)
}
