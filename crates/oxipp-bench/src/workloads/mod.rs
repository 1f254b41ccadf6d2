//! The measured scenarios. Each returns one JSON object for stdout.
//!
//! All of them start the same way: a fleet of simulated engines registers while a simulated
//! client watches the Hub's notifications, so registration is both a benchmark of its own and
//! the precondition of every other one.

pub mod execute_all;
pub mod registration;
pub mod rss;
pub mod throughput;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::client::{RegistrationWatch, SimClient};
use crate::fleet::{Fleet, FleetOptions, Registered};
use crate::sock::{settle, wait};

/// Time PUB/SUB needs before a new subscription is in effect ("slow joiner"); notifications
/// published earlier would be lost and registration would look slower than it is.
const SUBSCRIBE_SETTLE: Duration = Duration::from_millis(300);
/// If no notification has arrived for this long, ask the Hub directly (`connection_request`),
/// in case a controller does not publish notifications (or lost some).
const QUIET_BEFORE_QUERY: Duration = Duration::from_secs(2);

/// Timings of one fleet's registration.
#[derive(Debug, Clone)]
pub struct RegistrationReport {
    pub engines: usize,
    pub registered: usize,
    /// Start of the fleet until every engine was announced, if all were.
    pub elapsed: Option<Duration>,
    /// Start of the fleet until the last `registration_reply` arrived.
    pub replies_elapsed: Option<Duration>,
    pub method: &'static str,
    pub unregistered: usize,
}

impl RegistrationReport {
    pub fn to_json(&self) -> Value {
        json!({
            "engines": self.engines,
            "registered": self.registered,
            "registration_s": self.elapsed.map(|d| d.as_secs_f64()),
            "registration_replies_s": self.replies_elapsed.map(|d| d.as_secs_f64()),
            "detected_by": self.method,
            "unregistered_during_run": self.unregistered,
        })
    }
}

/// A fleet that finished registering, with the ids the Hub assigned.
pub struct Up {
    pub fleet: Fleet,
    pub engines: Vec<Registered>,
    pub report: RegistrationReport,
}

/// Starts `opts.engines` engines and waits (up to `timeout`) until the Hub announces all of
/// them. The clock starts just before the first engine socket is created.
pub fn bring_up(client: &SimClient, opts: &FleetOptions, timeout: Duration) -> Result<Up> {
    let mut sub = client.notifications()?;
    let mut query = client.dealer(client.conn.client.registration)?;
    // (the subscription goes out only while the SUB is driven; the query DEALER holds its
    // requests until it has connected, inside `connection_request`)
    settle(&mut sub, SUBSCRIBE_SETTLE)?;
    let t0 = Instant::now();
    let fleet = Fleet::start(&client.conn, opts)?;
    let mut watch = RegistrationWatch::new(&fleet.uuids);
    let mut engines = Vec::with_capacity(opts.engines);
    let mut replies_elapsed = None;
    let mut last_progress = Instant::now();
    let mut method = "registration_notification";
    let deadline = t0 + timeout;
    while !watch.complete() && Instant::now() < deadline {
        wait(&mut sub, Duration::from_millis(20))?;
        let before = watch.count();
        watch.drain(&mut sub);
        engines.extend(fleet.registered.try_iter());
        if replies_elapsed.is_none() && engines.len() == opts.engines {
            replies_elapsed = Some(t0.elapsed());
        }
        if watch.count() > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > QUIET_BEFORE_QUERY {
            if let Ok(listed) = client.connection_request(&mut query, Duration::from_secs(2)) {
                let before = watch.count();
                watch.absorb(&listed);
                if watch.count() > before {
                    method = "connection_reply";
                }
            }
            last_progress = Instant::now();
        }
    }
    let elapsed = watch.complete().then(|| t0.elapsed());
    // Registration replies may still trail the notifications by a moment.
    let tail = Instant::now() + Duration::from_secs(2);
    while engines.len() < opts.engines && Instant::now() < tail {
        if let Ok(r) = fleet.registered.recv_timeout(Duration::from_millis(50)) {
            engines.push(r);
        }
    }
    let report = RegistrationReport {
        engines: opts.engines,
        registered: watch.count(),
        elapsed,
        replies_elapsed,
        method,
        unregistered: watch.unregistered,
    };
    Ok(Up {
        fleet,
        engines,
        report,
    })
}

/// Like [`bring_up`] but fails unless every engine registered (the throughput scenarios need
/// a complete fleet to mean anything).
pub fn bring_up_all(client: &SimClient, opts: &FleetOptions, timeout: Duration) -> Result<Up> {
    let up = bring_up(client, opts, timeout)?;
    if up.report.elapsed.is_none() {
        bail!(
            "only {}/{} engines registered within {:.0} s (fleet: {})",
            up.report.registered,
            opts.engines,
            timeout.as_secs_f64(),
            up.fleet.stats.to_json()
        );
    }
    // The stock task scheduler learns about engines from the same notifications we just saw;
    // give it a moment so the first tasks do not measure its start-up.
    std::thread::sleep(Duration::from_millis(300));
    Ok(up)
}
