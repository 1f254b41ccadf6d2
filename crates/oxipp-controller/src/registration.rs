//! Engine registration, heartbeats and unregistration.

use std::time::{Duration, Instant};

use oxipp_wire::errors::{error_content, py_repr};
use oxipp_wire::{msg_types as mt, Frame};
use serde_json::{json, Value};

use crate::core::{ident_str, Controller, Inbound, Timer};
use crate::outbox::{Outbox, Sock};
use crate::registry::RegisterError;

/// The engine state file is rewritten (every engine, then fsync) at most once per this much
/// time per registered engine (5,000 engines: every 100 ms; a few: whenever they change):
/// writing it per registration made registering N engines cost O(N²) (5,000: seconds).
const STATE_WRITE_PER_ENGINE: Duration = Duration::from_micros(20);

impl Controller {
    pub(crate) fn on_registration_request(
        &mut self,
        inb: &Inbound,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let content = inb.msg.content_map().unwrap_or_default();
        let Some(uuid) = content
            .get("uuid")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            self.refuse_registration(inb, error_content("KeyError", "'uuid'"), out);
            return;
        };
        let requested = content.get("id").and_then(Value::as_u64).map(|v| v as u32);
        let deadline = now + Duration::from_secs_f64(self.cfg.registration_timeout_s());
        match self.registry.request(
            &uuid,
            requested,
            deadline,
            self.cfg.max_pending_registrations,
        ) {
            Ok(id) => {
                if let Some(r) = requested.filter(|r| *r != id) {
                    tracing::warn!("engine {uuid} asked for id {r}, which is taken; granted {id}");
                }
                tracing::info!("registration::register_engine({id}, {uuid})");
                let reply = json!({
                    "id": id,
                    "status": "ok",
                    "hb_period": self.cfg.hb_period_ms,
                    "connection_info": self.engine_info.0,
                    mt::NOTICES_CLOSED_CONNECTIONS: true,
                });
                // Stock sends the reply without a parent header.
                self.reply_query(
                    &inb.msg.idents,
                    mt::REGISTRATION_REPLY,
                    None,
                    reply,
                    vec![],
                    out,
                );
                self.heart.want_fast(now);
            }
            Err(RegisterError::InUse(u)) => {
                self.stats.bump("registration_in_use");
                let c = error_content(
                    "KeyError",
                    &py_repr(&format!("uuid {} in use", py_repr(&u))),
                );
                self.refuse_registration(inb, c, out);
            }
            Err(RegisterError::Flooded(n)) => {
                let count = self.stats.bump("registration_flood");
                if count <= 10 || count.is_power_of_two() {
                    tracing::warn!(
                        "refusing registration of {uuid}: {n} registrations already waiting"
                    );
                }
                let c = error_content(
                    "RuntimeError",
                    &format!("too many engines registering at once ({n} waiting for a heartbeat); retry later"),
                );
                self.refuse_registration(inb, c, out);
            }
        }
    }

    /// A `registration_reply` carrying an error (stock sends it without a parent header).
    fn refuse_registration(&mut self, inb: &Inbound, content: Value, out: &mut dyn Outbox) {
        self.reply_query(
            &inb.msg.idents,
            mt::REGISTRATION_REPLY,
            None,
            content,
            vec![],
            out,
        );
    }

    /// `unregistration_request {"id": eid}` from an engine or its nanny; no reply.
    pub(crate) fn on_unregistration_request(
        &mut self,
        inb: &Inbound,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let content = inb.msg.content_map().unwrap_or_default();
        let id = match content.get("id") {
            Some(Value::Number(n)) => n.as_u64().map(|v| v as u32),
            _ => None,
        };
        match id {
            Some(id) => {
                if let Some(uuid) = self.registry.cancel_pending_id(id) {
                    tracing::info!(
                        "registration::cancelled pending registration of engine {id} ({uuid})"
                    );
                } else if self.registry.uuid_of(id).is_some() {
                    self.unregister_engine(id, "unregistration request", now, out);
                } else {
                    tracing::debug!("unregistration of unknown engine {id} ignored");
                }
            }
            None => {
                // An engine that timed out waiting for its registration reply sends id null;
                // its uuid is the routing identity.
                if let Some(f) = inb.msg.idents.first() {
                    let uuid = ident_str(f);
                    if self.registry.cancel_pending_uuid(&uuid) {
                        tracing::info!("registration::cancelled pending registration of {uuid}");
                    }
                }
            }
        }
    }

    /// `[uuid, payload]` on the pong ROUTER.
    pub(crate) fn on_pong(&mut self, frames: Vec<Frame>, now: Instant, out: &mut dyn Outbox) {
        if frames.len() != 2 {
            self.stats.bump("bad_pong");
            return;
        }
        let uuid = ident_str(&frames[0]);
        if !self.heart.pong(&uuid, &frames[1]) {
            return;
        }
        if self.registry.is_pending(&uuid) {
            self.complete_registration(&uuid, now, out);
        }
    }

    fn complete_registration(&mut self, uuid: &str, now: Instant, out: &mut dyn Outbox) {
        let Some(engine) = self.registry.complete(uuid) else {
            return;
        };
        tracing::info!("engine::Engine Connected: {}", engine.id);
        self.heart.add(uuid);
        self.book.engine(engine.id);
        self.state_dirty = true;
        self.notify(
            mt::REGISTRATION_NOTIFICATION,
            json!({"id": engine.id, "uuid": uuid}),
            None,
            out,
        );
        if let Some(s) = self.sched.as_mut() {
            let actions = s.add_engine(uuid, now);
            self.apply_sched_actions(actions, None, out);
        }
    }

    pub(crate) fn heartbeat_tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        let waiting = self.registry.pending_len() > 0;
        if let Some(p) = self.heart.fast_ping(now, waiting) {
            out.send(Sock::HbPing, vec![p.into()]);
        }
        if let Some(beat) = self.heart.beat(now) {
            out.send(Sock::HbPing, vec![beat.ping.into()]);
            for uuid in beat.stopped {
                if let Some(id) = self.registry.id_of(&uuid) {
                    tracing::warn!(
                        "engine {id} ({uuid}): no heartbeat for {:.1} s; unregistering it",
                        (self.cfg.hb_max_misses as f64 + 1.0) * self.cfg.hb_period_ms as f64
                            / 1000.0
                    );
                    self.unregister_engine(id, "heart failure", now, out);
                }
            }
        }
        if let Some(stopped) = self.heart.probe_result(now) {
            for uuid in stopped {
                if let Some(id) = self.registry.id_of(&uuid) {
                    tracing::warn!(
                        "engine {id} ({uuid}): its heart connection dropped and it answered no \
                         ping for {} ms; unregistering it",
                        crate::heartbeat::PROBE_WINDOW.as_millis()
                    );
                    self.stats.bump("heart_probe_stopped");
                    self.unregister_engine(id, "heart connection lost", now, out);
                }
            }
        }
    }

    /// The shell saw a heart's connection to the pong socket drop (its `Disconnected`
    /// event): starts a probe (heartbeat.rs), so a killed engine is unregistered within a
    /// second.
    pub fn on_heart_disconnect(&mut self, now: Instant) {
        self.stats.bump("heart_disconnects");
        self.heart.probe(now);
    }

    /// Removes an engine everywhere, tells clients, and arranges for its unfinished work to
    /// fail (after a short grace period for replies already on their way).
    pub(crate) fn unregister_engine(
        &mut self,
        id: u32,
        why: &str,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(engine) = self.registry.unregister(id) else {
            return;
        };
        tracing::info!(
            "registration::unregister_engine({id}) ({}): {why}",
            engine.uuid
        );
        self.heart.remove(&engine.uuid);
        self.state_dirty = true;
        self.notify(
            mt::UNREGISTRATION_NOTIFICATION,
            json!({"id": id, "uuid": engine.uuid}),
            None,
            out,
        );
        let task_ids = self
            .sched
            .as_mut()
            .map(|s| s.remove_engine(&engine.uuid))
            .unwrap_or_default();
        let mux_ids: Vec<String> = self
            .book
            .engines
            .get(&id)
            .map(|e| e.queue.iter().cloned().collect())
            .unwrap_or_default();
        self.bcast_engine_died(&engine.uuid, out);
        let at = now + Duration::from_millis(self.cfg.stranded_grace_ms);
        self.schedule(
            at,
            Timer::Stranded {
                engine_uuid: engine.uuid,
                engine_id: id,
                task_ids,
                mux_ids,
            },
        );
    }

    /// When the engine state file is next due to be written (`None`: it is current).
    pub(crate) fn state_due(&self) -> Option<Instant> {
        if !self.state_dirty || self.state_file.is_none() {
            return None;
        }
        let every = STATE_WRITE_PER_ENGINE * self.registry.len().min(50_000) as u32;
        Some(self.state_written.map_or_else(Instant::now, |t| t + every))
    }

    /// Writes the engine state file if engines changed and it is due. The shell calls this
    /// before it flushes a pass's output, so an engine whose registration notification went
    /// out is already on disk, except in large clusters: there it follows within
    /// [`STATE_WRITE_PER_ENGINE`] × engines of the previous write.
    pub(crate) fn save_state(&mut self, now: Instant) {
        if self.state_due().is_some_and(|t| t <= now) {
            self.write_state(now);
        }
    }

    /// Rewrites `<profile>/log/engines<cluster_id>.json` for `--restore`.
    pub(crate) fn write_state(&mut self, now: Instant) {
        self.state_dirty = false;
        self.state_written = Some(now);
        if let Some(path) = &self.state_file {
            if let Err(e) = oxipp_wire::connection::write_private_json(path, &self.registry.state())
            {
                tracing::warn!("could not write engine state {}: {e}", path.display());
            }
        }
    }
}
