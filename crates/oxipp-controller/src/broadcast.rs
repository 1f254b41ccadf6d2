//! The broadcast scheduler: one client request fanned out to many engines.
//!
//! Stock builds a tree of scheduler processes; one process can address every engine
//! directly, so this is a flat fan-out over the engine-facing broadcast sockets (engines
//! connect to `broadcast[id % n]`), which is wire-compatible. Unlike stock, broadcasts are
//! recorded in the Hub, and a coalescing broadcast whose engine dies completes with an
//! `EngineError` in that engine's place instead of hanging forever.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use oxipp_wire::errors::error_content;
use oxipp_wire::session::encode;
use oxipp_wire::{Frame, Message};
use serde_json::{json, Map, Value};

use crate::core::{frame, ident_str, Controller, Inbound};
use crate::outbox::{Outbox, Sock};

#[derive(Debug, Default)]
pub struct Broadcasts {
    pending: HashMap<String, Bcast>,
}

#[derive(Debug)]
struct Bcast {
    client: Frame,
    coalescing: bool,
    /// `[uuid, id]` pairs in request order.
    targets: Vec<(String, u64)>,
    /// Coalescing: replies kept until all engines answered.
    replies: HashMap<String, Message>,
    outstanding: HashSet<String>,
    /// The request header (parents of replies made up for engines that cannot answer).
    header: Map<String, Value>,
}

fn parse_targets(md: &Map<String, Value>) -> Result<Vec<(String, u64)>, String> {
    let list = md
        .get("targets")
        .and_then(Value::as_array)
        .ok_or("metadata.targets must be a list")?;
    list.iter()
        .map(|t| match t.as_array().map(Vec::as_slice) {
            Some([Value::String(u), id]) => id
                .as_u64()
                .map(|id| (u.clone(), id))
                .ok_or_else(|| format!("bad engine id in target {t}")),
            _ => Err(format!("each target must be [uuid, id], got {t}")),
        })
        .collect()
}

impl Controller {
    pub(crate) fn on_bcast_request(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let Some(client) = inb.msg.idents.first().cloned() else {
            self.stats.bump("bcast_no_client");
            return;
        };
        let parsed = inb
            .msg
            .metadata_map()
            .map_err(|e| e.to_string())
            .and_then(|md| {
                let targets = parse_targets(&md)?;
                let header = inb.msg.header_map().map_err(|e| e.to_string())?;
                Ok((md, targets, header))
            });
        let (mut md, targets, header) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.stats.bump("bcast_bad_metadata");
                let content =
                    error_content("ValueError", &format!("invalid broadcast request: {e}"));
                let m = self.hub_session.build(
                    vec![client],
                    &oxipp_wire::msg_types::reply_type(&inb.fields.msg_type),
                    Some(&inb.msg.header),
                    &json!({"is_broadcast": true, "is_coalescing": false, "original_msg_id": inb.fields.msg_id}),
                    &content,
                    vec![],
                );
                out.send(Sock::BcastClient, m.into_frames());
                return;
            }
        };
        let coalescing = md
            .get("is_coalescing")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let original = md
            .get("original_msg_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| inb.fields.msg_id.clone());
        md.insert("original_msg_id".into(), Value::String(original.clone()));
        self.record_request(&inb, "broadcast", None, None);
        self.book.pending.insert(original.clone());

        let metadata = Bytes::from(encode(&Value::Object(md)));
        let mut b = Bcast {
            client: client.clone(),
            coalescing,
            targets: targets.clone(),
            replies: HashMap::new(),
            outstanding: HashSet::new(),
            header: header.clone(),
        };
        let mut dead = Vec::new();
        for (uuid, id) in &targets {
            b.outstanding.insert(uuid.clone());
            if self.registry.id_of(uuid).is_none() {
                dead.push(uuid.clone());
                continue;
            }
            let mut h = header.clone();
            h.insert("msg_id".into(), Value::String(format!("{original}_{uuid}")));
            let mut m = Message {
                idents: vec![frame(uuid), client.clone()],
                signature: Bytes::new(),
                header: Bytes::from(encode(&Value::Object(h))),
                parent: inb.msg.parent.clone(),
                metadata: metadata.clone(),
                content: inb.msg.content.clone(),
                buffers: inb.msg.buffers.clone(),
            };
            self.hub_session.sign(&mut m);
            let leaf = (*id as usize % self.n_leaves) as u16;
            out.send(Sock::BcastLeaf(leaf), m.into_frames());
        }
        self.bcast.pending.insert(original.clone(), b);
        for uuid in dead {
            self.bcast_slot_failed(&original, &uuid, false, out);
        }
        if targets.is_empty() {
            self.bcast.pending.remove(&original);
            self.book.finish(&original, None, false);
        }
    }

    pub(crate) fn on_bcast_reply(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let [engine, client, ..] = inb.msg.idents.as_slice() else {
            self.stats.bump("bcast_reply_no_client");
            return;
        };
        let uuid = ident_str(engine);
        let client = client.clone();
        let md = inb.msg.metadata_map().unwrap_or_default();
        let original = md
            .get("original_msg_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let coalescing = md
            .get("is_coalescing")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !coalescing {
            let mut msg = inb.msg;
            msg.idents = vec![client];
            out.send(Sock::BcastClient, msg.clone().into_frames());
            self.bcast_slot_done(&original, &uuid, Some(msg), out);
        } else {
            self.bcast_slot_done(&original, &uuid, Some(inb.msg), out);
        }
    }

    /// An engine of a broadcast answered (or will never answer).
    fn bcast_slot_done(
        &mut self,
        original: &str,
        uuid: &str,
        reply: Option<Message>,
        out: &mut dyn Outbox,
    ) {
        let Some(b) = self.bcast.pending.get_mut(original) else {
            return;
        };
        if !b.outstanding.remove(uuid) {
            return;
        }
        if let Some(r) = reply {
            b.replies.insert(uuid.to_string(), r);
        }
        if !b.outstanding.is_empty() {
            return;
        }
        let Some(b) = self.bcast.pending.remove(original) else {
            return;
        };
        self.book.finish(original, None, true);
        let coalescing = b.coalescing;
        let Some(m) = self.coalesce(b) else { return };
        // The record of a non-coalescing broadcast gets the combined view too (every
        // engine's buffers), so `get_result` from another client sees all results.
        if let Ok(fields) = m.header_fields() {
            let inb = Inbound {
                msg: m.clone(),
                fields,
            };
            self.record_result(original, &inb, None, None);
        }
        if coalescing {
            out.send(Sock::BcastClient, m.into_frames());
        }
    }

    /// One reply for the whole broadcast: the last reply's header and parent, the first
    /// error's content if any engine failed (stock used the last reply's content, hiding
    /// earlier failures), `broadcast_targets` in request order and every result's buffers in
    /// that same order.
    fn coalesce(&self, mut b: Bcast) -> Option<Message> {
        let replies: Vec<Message> = b
            .targets
            .iter()
            .filter_map(|(u, _)| b.replies.remove(u))
            .collect();
        let last = replies.iter().max_by_key(|m| date_key(m)).cloned()?;
        let error_content = replies
            .iter()
            .find(|m| content_status(m) != "ok")
            .map(|m| m.content.clone());
        let mut md = last.metadata_map().unwrap_or_default();
        md.insert(
            "broadcast_targets".into(),
            Value::Array(b.targets.iter().map(|(u, i)| json!([u, i])).collect()),
        );
        let buffers = if error_content.is_some() {
            vec![]
        } else {
            replies.iter().flat_map(|m| m.buffers.clone()).collect()
        };
        let mut m = Message {
            idents: vec![b.client.clone()],
            signature: Bytes::new(),
            header: last.header.clone(),
            parent: last.parent.clone(),
            metadata: Bytes::from(encode(&Value::Object(md))),
            content: error_content.unwrap_or(last.content.clone()),
            buffers,
        };
        b.targets.clear();
        self.hub_session.sign(&mut m);
        Some(m)
    }

    /// Fills the slot of an engine that cannot answer with an `EngineError`.
    fn bcast_slot_failed(
        &mut self,
        original: &str,
        uuid: &str,
        engine_died: bool,
        out: &mut dyn Outbox,
    ) {
        let why = if engine_died {
            "died while running it"
        } else {
            "is not registered"
        };
        let Some(b) = self.bcast.pending.get(original) else {
            return;
        };
        let client = b.client.clone();
        let coalescing = b.coalescing;
        let reply = {
            let content = error_content(
                "EngineError",
                &format!("Engine {uuid:?} {why} (broadcast task {original:?})"),
            );
            let md = json!({
                "status": "error", "engine": uuid, "is_broadcast": true, "is_coalescing": coalescing,
                "original_msg_id": original, "dependencies_met": true,
            });
            let mut parent = b.header.clone();
            parent.insert("msg_id".into(), Value::String(format!("{original}_{uuid}")));
            let reply_type = oxipp_wire::msg_types::reply_type(
                parent
                    .get("msg_type")
                    .and_then(Value::as_str)
                    .unwrap_or("apply_request"),
            );
            let parent = Bytes::from(encode(&Value::Object(parent)));
            self.hub_session.build(
                vec![client],
                &reply_type,
                Some(&parent),
                &md,
                &content,
                vec![],
            )
        };
        if !coalescing && !engine_died {
            // Nobody else will tell the client about an engine that was never registered
            // (for engines that die, the client fails their slots on the notification).
            out.send(Sock::BcastClient, reply.clone().into_frames());
        }
        self.bcast_slot_done(original, uuid, Some(reply), out);
    }

    /// A dead engine's broadcast slots are failed (clients fail non-coalescing ones themselves).
    pub(crate) fn bcast_engine_died(&mut self, uuid: &str, out: &mut dyn Outbox) {
        let affected: Vec<String> = self
            .bcast
            .pending
            .iter()
            .filter(|(_, b)| b.outstanding.contains(uuid))
            .map(|(k, _)| k.clone())
            .collect();
        for original in affected {
            self.bcast_slot_failed(&original, uuid, true, out);
        }
    }
}

fn content_status(m: &Message) -> String {
    serde_json::from_slice::<Value>(&m.content)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Orders replies by their header date (the last engine to finish supplies the header).
fn date_key(m: &Message) -> String {
    serde_json::from_slice::<Value>(&m.header)
        .ok()
        .and_then(|v| v.get("date").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}
