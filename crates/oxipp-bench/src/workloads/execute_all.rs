//! `execute-all`: one `execute_request` to every engine through mux, as `DirectView.execute`
//! (and `%px`) does, timed until the last reply is back.
//!
//! This is the fan-out cost a user feels on a large cluster: N requests and N replies through
//! the mux relay per round.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use oxipp_wire::msg_types::EXECUTE_REQUEST;
use oxipp_wire::session::encode;
use serde_json::{json, Value};

use super::bring_up_all;
use crate::client::SimClient;
use crate::fleet::FleetOptions;
use crate::sock::{send, take, wait};
use crate::stats::summarize;

/// A round whose replies do not all arrive within this time fails the run.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(
    client: &SimClient,
    opts: &FleetOptions,
    timeout: Duration,
    rounds: usize,
) -> Result<Value> {
    let mut up = bring_up_all(client, opts, timeout)?;
    let mut sock = client.dealer(client.conn.client.mux)?;
    let metadata = Bytes::from_static(br#"{"label": null}"#);
    let content = Bytes::from(encode(
        &json!({"code": "pass", "silent": false, "user_expressions": {}}),
    ));
    let mut round_ms = Vec::with_capacity(rounds);
    let mut failed = 0u64;
    for round in 0..rounds.max(1) {
        let t0 = Instant::now();
        let mut pending = HashSet::with_capacity(up.engines.len());
        for e in &up.engines {
            let route = vec![Bytes::from(e.uuid.clone())];
            let (id, m) = client.request(route, EXECUTE_REQUEST, &metadata, &content, &[]);
            send(&mut sock, m.into_frames())?;
            pending.insert(id);
        }
        sock.flush();
        while !pending.is_empty() {
            let left = ROUND_TIMEOUT.saturating_sub(t0.elapsed());
            if left.is_zero() {
                bail!(
                    "round {round}: {} of {} replies missing after {} s",
                    pending.len(),
                    up.engines.len(),
                    ROUND_TIMEOUT.as_secs()
                );
            }
            wait(&mut sock, left)?;
            sock.handle_io();
            while let Some(frames) = take(&mut sock) {
                let r = client.parse_reply(frames)?;
                if !pending.remove(&r.parent_msg_id) {
                    bail!("unexpected reply {}", r.parent_msg_id);
                }
                failed += u64::from(!r.ok);
            }
        }
        round_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let summary = summarize(&round_ms);
    // Stop first, so that the counters include the last replies.
    up.fleet.stop();
    Ok(json!({
        "ok": failed == 0,
        "error": (failed > 0).then(|| format!("{failed} execute replies were not ok")),
        "engines": up.engines.len(),
        "rounds": round_ms.len(),
        "median_ms": summary.median,
        "round_ms": summary,
        "registration": up.report.to_json(),
        "fleet": up.fleet.stats.to_json(),
    }))
}
