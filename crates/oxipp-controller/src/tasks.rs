//! The load-balanced task channel: glue between the sockets, the Hub records and the
//! sans-IO scheduler in `oxipp-scheduler`.
//!
//! The scheduler decides; this module holds each request's frames until it is answered (so
//! a retry or an unmet dependency can be re-sent elsewhere) and turns decisions into
//! messages.

use std::time::Instant;

use oxipp_scheduler::{Action, Outcome, TaskRequest};
use oxipp_wire::errors::{error_content, py_repr};
use oxipp_wire::{msg_types as mt, Frame, Message};
use serde_json::{json, Map, Value};

use crate::core::{frame, ident_str, Controller, Inbound};
use crate::outbox::{Outbox, Sock};
use crate::records::ReplyMd;
use crate::relay::reply_status;
use serde::Deserialize;

/// A load-balanced request waiting for its final reply.
#[derive(Debug, Clone)]
pub struct HeldTask {
    /// Routing id of the client that sent it.
    pub client: Frame,
    /// The request without routing frames.
    pub msg: Message,
    pub msg_type: String,
    /// Engine it currently runs on.
    pub engine: Option<String>,
}

/// An engine reply (real or fabricated for a dead engine) being processed.
pub(crate) struct ReplyInFlight {
    pub msg_id: String,
    pub engine_uuid: String,
    pub engine_id: Option<u32>,
    pub inb: Inbound,
    /// The reply's metadata fields, decoded once.
    pub md: ReplyMd,
    pub status: String,
}

impl ReplyInFlight {
    fn new(msg_id: String, engine_uuid: String, engine_id: Option<u32>, inb: Inbound) -> Self {
        let md = ReplyMd::parse(&inb.msg.metadata);
        let status = md.status.clone().unwrap_or_else(|| reply_status(&inb));
        ReplyInFlight {
            msg_id,
            engine_uuid,
            engine_id,
            inb,
            md,
            status,
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            ok: self.status == "ok",
            dependencies_met: self.md.dependencies_met,
        }
    }
}

/// The scheduling fields of a task request's metadata, decoded without building a JSON tree.
#[derive(Deserialize)]
struct TaskMd {
    #[serde(default)]
    after: Option<Value>,
    #[serde(default)]
    follow: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    targets: Option<Value>,
    #[serde(default)]
    retries: Option<Value>,
    #[serde(default)]
    label: Option<Value>,
}

/// The request's scheduling parameters and label from its metadata frame. The usual plain
/// task (`after`/`follow`/`targets` empty, no timeout, no retries) costs one small typed
/// decode; anything else goes through [`TaskRequest::from_metadata`] as before.
fn parse_task_metadata(msg_id: &str, raw: &[u8]) -> Result<(TaskRequest, Option<String>), String> {
    let Ok(md) = serde_json::from_slice::<TaskMd>(raw) else {
        // not an object, odd types or duplicate keys: the generic path decides
        let map = oxipp_wire::frames::object(raw, "metadata").map_err(|e| e.to_string())?;
        let label = map.get("label").and_then(Value::as_str).map(str::to_string);
        return Ok((TaskRequest::from_metadata(msg_id, &map)?, label));
    };
    let label = md
        .label
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    let empty = |v: &Option<Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    let zero = |v: &Option<Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if empty(&md.after)
        && empty(&md.follow)
        && empty(&md.targets)
        && zero(&md.timeout)
        && zero(&md.retries)
    {
        return Ok((TaskRequest::new(msg_id), label));
    }
    let mut map = Map::new();
    for (k, v) in [
        ("after", md.after),
        ("follow", md.follow),
        ("timeout", md.timeout),
        ("targets", md.targets),
        ("retries", md.retries),
    ] {
        if let Some(v) = v {
            map.insert(k.into(), v);
        }
    }
    Ok((TaskRequest::from_metadata(msg_id, &map)?, label))
}

impl Controller {
    pub(crate) fn on_task_request(&mut self, inb: Inbound, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = inb.msg.idents.first().cloned() else {
            self.stats.bump("task_no_client");
            return;
        };
        let msg_id = inb.fields.msg_id.clone();
        if self.sched.is_none() {
            // `pure`: a plain round-robin relay through the engine-facing DEALER.
            self.record_request(&inb, "task", None, None);
            self.book.pending.insert(msg_id.clone());
            self.book.unassigned.insert(msg_id);
            out.send(Sock::TaskEngine, inb.msg.into_frames());
            return;
        }
        if self.held.contains_key(&msg_id) {
            self.fail_request(
                &inb,
                client,
                "ValueError",
                &format!("msg_id {} is already in use", py_repr(&msg_id)),
                out,
            );
            return;
        }
        let (req, label) = match parse_task_metadata(&msg_id, &inb.msg.metadata) {
            Ok(p) => p,
            Err(e) => {
                self.stats.bump("task_bad_metadata");
                self.fail_request(
                    &inb,
                    client,
                    "ValueError",
                    &format!("invalid task metadata: {e}"),
                    out,
                );
                return;
            }
        };
        self.record_request(&inb, "task", None, Some(label));
        self.book.pending.insert(msg_id.clone());
        self.book.unassigned.insert(msg_id.clone());
        let mut msg = inb.msg;
        msg.idents.clear();
        self.held.insert(
            msg_id,
            HeldTask {
                client,
                msg,
                msg_type: inb.fields.msg_type,
                engine: None,
            },
        );
        let actions = self
            .sched
            .as_mut()
            .map(|s| s.submit(req, now))
            .unwrap_or_default();
        self.apply_sched_actions(actions, None, out);
    }

    /// Answers a request the scheduler never accepted (bad metadata, duplicate id).
    fn fail_request(
        &mut self,
        inb: &Inbound,
        client: Frame,
        ename: &str,
        evalue: &str,
        out: &mut dyn Outbox,
    ) {
        let content = error_content(ename, evalue);
        let reply = self.sched_session.build(
            vec![client],
            &mt::reply_type(&inb.fields.msg_type),
            Some(&inb.msg.header),
            &json!({}),
            &content,
            vec![],
        );
        out.send(Sock::TaskClient, reply.into_frames());
    }

    pub(crate) fn on_task_reply(&mut self, inb: Inbound, now: Instant, out: &mut dyn Outbox) {
        if self.sched.is_none() {
            return self.on_pure_task_reply(inb, out);
        }
        let [engine, _client, ..] = inb.msg.idents.as_slice() else {
            self.stats.bump("task_reply_no_client");
            return;
        };
        let engine_uuid = ident_str(engine);
        let Some(msg_id) = inb.msg.parent_id().ok().and_then(|p| p.msg_id) else {
            self.stats.bump("task_reply_no_parent");
            return;
        };
        if !self.held.contains_key(&msg_id) {
            // e.g. an engine answering after we already failed the task as stranded
            self.stats.bump("task_reply_unknown");
            tracing::debug!("task::reply for unknown task {msg_id} from {engine_uuid}");
            return;
        }
        let engine_id = self.registry.id_of(&engine_uuid);
        let reply = ReplyInFlight::new(msg_id, engine_uuid, engine_id, inb);
        let outcome = reply.outcome();
        let actions = self
            .sched
            .as_mut()
            .map(|s| s.on_reply(&reply.engine_uuid, &reply.msg_id, outcome, now))
            .unwrap_or_default();
        self.apply_sched_actions(actions, Some(reply), out);
    }

    fn on_pure_task_reply(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        if let Some(msg_id) = inb.msg.parent_id().ok().and_then(|p| p.msg_id) {
            let md = ReplyMd::parse(&inb.msg.metadata);
            let engine = md.engine.clone();
            let eid = engine.as_deref().and_then(|u| self.registry.id_of(u));
            if self
                .book
                .finish(&msg_id, eid, reply_status(&inb) != "aborted")
            {
                self.record_result(&msg_id, &inb, engine.as_deref(), Some(&md));
            }
        }
        out.send(Sock::TaskClient, inb.msg.into_frames());
    }

    /// Carries out scheduler decisions. `reply` is the engine reply that produced them, if any.
    pub(crate) fn apply_sched_actions(
        &mut self,
        actions: Vec<Action>,
        mut reply: Option<ReplyInFlight>,
        out: &mut dyn Outbox,
    ) {
        for action in actions {
            match action {
                Action::Run { msg_id, engine } => self.run_task(&msg_id, &engine, out),
                Action::Fail { msg_id, error } => {
                    let Some(held) = self.held.remove(&msg_id) else {
                        continue;
                    };
                    let content = error_content(error.ename(), error.evalue());
                    let m = self.sched_session.build(
                        vec![held.client],
                        &mt::reply_type(&held.msg_type),
                        Some(&held.msg.header),
                        &json!({}),
                        &content,
                        vec![],
                    );
                    out.send(Sock::TaskClient, m.into_frames());
                    self.book.finish(&msg_id, None, false);
                    self.record_failure(&msg_id, content, None);
                }
                Action::Relay { msg_id } => {
                    let Some(held) = self.held.remove(&msg_id) else {
                        continue;
                    };
                    let Some(r) = reply.take_if(|r| r.msg_id == msg_id) else {
                        tracing::error!("task::scheduler relayed {msg_id} without a reply in hand");
                        continue;
                    };
                    let aborted = r.status == "aborted";
                    if self.book.finish(&msg_id, r.engine_id, !aborted) {
                        self.record_result(&msg_id, &r.inb, Some(&r.engine_uuid), Some(&r.md));
                    }
                    let mut msg = r.inb.msg;
                    msg.idents = vec![held.client, frame(&r.engine_uuid)];
                    out.send(Sock::TaskClient, msg.into_frames());
                }
            }
        }
        if let Some(r) = reply {
            // Not relayed: the task is being retried elsewhere; the Hub forgets that attempt.
            if let Some(eid) = r.engine_id {
                self.book.engine(eid).tasks.remove(&r.msg_id);
            }
        }
    }

    fn run_task(&mut self, msg_id: &str, engine: &str, out: &mut dyn Outbox) {
        let Some(held) = self.held.get_mut(msg_id) else {
            return;
        };
        held.engine = Some(engine.to_string());
        let mut msg = held.msg.clone();
        msg.idents = vec![frame(engine), held.client.clone()];
        out.send(Sock::TaskEngine, msg.into_frames());
        self.book.unassigned.remove(msg_id);
        if let Some(eid) = self.registry.id_of(engine) {
            self.book.engine(eid).tasks.insert(msg_id.to_string());
        }
        if self.records_enabled() {
            let e = engine.to_string();
            let _ = self
                .db
                .update_record(msg_id, &mut |r| r.engine_uuid = Some(e.clone()));
        }
    }

    /// Fails (or retries) work that was running on an engine that died.
    pub(crate) fn fail_stranded(
        &mut self,
        engine_uuid: &str,
        engine_id: u32,
        task_ids: Vec<String>,
        mux_ids: Vec<String>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        for msg_id in task_ids {
            let Some(held) = self.held.get(&msg_id) else {
                continue;
            };
            if held.engine.as_deref() != Some(engine_uuid) {
                continue;
            }
            let content = error_content(
                "EngineError",
                &format!(
                    "Engine b{} died while running task {}",
                    py_repr(engine_uuid),
                    py_repr(&msg_id)
                ),
            );
            let md = json!({
                "status": "error",
                "engine": engine_uuid,
                "date": oxipp_wire::dates::now_iso(),
                "dependencies_met": true,
            });
            let m = self.sched_session.build(
                vec![frame(engine_uuid), held.client.clone()],
                &mt::reply_type(&held.msg_type),
                Some(&held.msg.header),
                &md,
                &content,
                vec![],
            );
            let Ok(fields) = m.header_fields() else {
                continue;
            };
            let inb = Inbound { msg: m, fields };
            let outcome = Outcome {
                ok: false,
                dependencies_met: true,
            };
            let actions = self
                .sched
                .as_mut()
                .map(|s| s.on_reply(engine_uuid, &msg_id, outcome, now))
                .unwrap_or_default();
            let reply = ReplyInFlight::new(msg_id, engine_uuid.to_string(), Some(engine_id), inb);
            self.apply_sched_actions(actions, Some(reply), out);
        }
        for msg_id in mux_ids {
            if self.book.finish(&msg_id, Some(engine_id), false) {
                let content = error_content(
                    "EngineError",
                    &format!(
                        "Engine {engine_id} died while running task {}",
                        py_repr(&msg_id)
                    ),
                );
                self.record_failure(&msg_id, content, Some(engine_uuid));
            }
        }
        self.book.drop_engine(engine_id);
    }
}
