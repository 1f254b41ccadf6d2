//! Writing task records: requests, results and IOPub output, as the stock Hub does.
//!
//! The request's and reply's JSON frames are stored as they arrived ([`Dict::from_raw`]) and
//! decoded only if a query reads them; what the record needs at once (dates, label, engine)
//! comes from a small typed parse of the few fields involved.

use std::borrow::Cow;

use chrono::Utc;
use oxipp_taskdb::{Dict, TaskRecord};
use oxipp_wire::{dates, Frame};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::{Controller, Inbound};

/// The metadata fields the Hub and the task scheduler read from a request or a reply,
/// decoded without building a JSON tree (other fields are skipped).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MdFields<'a> {
    #[serde(default)]
    pub label: Option<Value>,
    #[serde(default, borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(default)]
    pub dependencies_met: Option<Value>,
    #[serde(default, borrow)]
    pub started: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub engine: Option<Cow<'a, str>>,
}

/// Owned [`MdFields`] with the types the Hub uses.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplyMd {
    pub status: Option<String>,
    pub dependencies_met: bool,
    pub started: Option<String>,
    pub engine: Option<String>,
    pub label: Option<String>,
}

impl ReplyMd {
    /// Decodes `raw` (a metadata frame). A frame that is not a JSON object, or whose fields
    /// have unexpected types, gives what a map lookup would have: the fields that are there
    /// with the right type, defaults for the rest.
    pub fn parse(raw: &[u8]) -> ReplyMd {
        match serde_json::from_slice::<MdFields>(raw) {
            Ok(f) => ReplyMd {
                status: f.status.map(Cow::into_owned),
                dependencies_met: f
                    .dependencies_met
                    .as_ref()
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                started: f.started.map(Cow::into_owned),
                engine: f.engine.map(Cow::into_owned),
                label: f.label.as_ref().and_then(Value::as_str).map(str::to_string),
            },
            // unusual types or duplicate keys: fall back to the generic decoding
            Err(_) => {
                let m = oxipp_wire::frames::object(raw, "metadata").unwrap_or_default();
                let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                ReplyMd {
                    status: s("status"),
                    dependencies_met: m
                        .get("dependencies_met")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    started: s("started"),
                    engine: s("engine"),
                    label: s("label"),
                }
            }
        }
    }
}

fn raw_dict(f: &Frame) -> Option<Dict> {
    Dict::from_raw(f.clone())
}

impl Controller {
    pub(crate) fn records_enabled(&self) -> bool {
        self.db.backend_name() != "nodb"
    }

    /// Records a new request (mux, task or broadcast), merging with a record that IOPub
    /// output may have created first. `label`: the request's label if the caller already
    /// decoded its metadata (`None`: decode it here).
    pub(crate) fn record_request(
        &mut self,
        inb: &Inbound,
        queue: &str,
        engine_uuid: Option<&str>,
        label: Option<Option<String>>,
    ) {
        if !self.records_enabled() {
            return;
        }
        let label = label.unwrap_or_else(|| ReplyMd::parse(&inb.msg.metadata).label);
        let rec = TaskRecord {
            msg_id: inb.fields.msg_id.clone(),
            submitted: inb.fields.date.as_deref().and_then(dates::parse),
            header: raw_dict(&inb.msg.header),
            metadata: raw_dict(&inb.msg.metadata),
            content: raw_dict(&inb.msg.content),
            buffers: inb.msg.buffers.clone(),
            client_uuid: Some(inb.fields.session.clone()),
            engine_uuid: engine_uuid.map(str::to_string),
            queue: Some(queue.to_string()),
            stdout: Some(String::new()),
            stderr: Some(String::new()),
            label,
            ..TaskRecord::empty(&inb.fields.msg_id)
        };
        let msg_id = &inb.fields.msg_id;
        if self.db.contains(msg_id) {
            let mut fresh = Some(rec);
            let res = self
                .db
                .update_record(msg_id, &mut |existing: &mut TaskRecord| {
                    if let Some(new) = fresh.take() {
                        merge_request(existing, new);
                    }
                });
            if let Err(e) = res {
                tracing::error!("db::DB Error updating record {msg_id}: {e}");
            }
        } else if let Err(e) = self.db.add_record(rec) {
            tracing::error!("db::DB Error adding record {msg_id}: {e}");
        }
    }

    /// Records the reply to `msg_id`. `md`: the reply's metadata fields, if the caller
    /// decoded them.
    pub(crate) fn record_result(
        &mut self,
        msg_id: &str,
        reply: &Inbound,
        engine_uuid: Option<&str>,
        md: Option<&ReplyMd>,
    ) {
        if !self.records_enabled() {
            return;
        }
        let parsed;
        let md = match md {
            Some(m) => m,
            None => {
                parsed = ReplyMd::parse(&reply.msg.metadata);
                &parsed
            }
        };
        let completed = reply.fields.date.as_deref().and_then(dates::parse);
        let started = md.started.as_deref().and_then(dates::parse);
        let engine = engine_uuid
            .map(str::to_string)
            .or_else(|| md.engine.clone());
        let header = raw_dict(&reply.msg.header);
        let metadata = raw_dict(&reply.msg.metadata);
        let content = raw_dict(&reply.msg.content);
        let buffers = reply.msg.buffers.clone();
        let mut parts = Some((header, metadata, content, buffers, engine));
        let res = self.db.update_record(msg_id, &mut |r: &mut TaskRecord| {
            if let Some((h, m, c, b, engine)) = parts.take() {
                let now = Utc::now();
                r.result_header = h;
                r.result_metadata = m;
                r.result_content = c;
                r.result_buffers = b;
                r.started = started;
                r.completed = completed.or(Some(now));
                r.received = Some(now);
                if engine.is_some() {
                    r.engine_uuid = engine;
                }
            }
        });
        if let Err(e) = res {
            tracing::debug!("db::no record to update for result of {msg_id}: {e}");
        }
    }

    /// Marks `msg_id` completed with a controller-made error (no reply message exists).
    pub(crate) fn record_failure(
        &mut self,
        msg_id: &str,
        content: Value,
        engine_uuid: Option<&str>,
    ) {
        if !self.records_enabled() {
            return;
        }
        let now = Utc::now();
        let header = Value::Object(self.hub_session.header("apply_reply"));
        let mut parts = Some((header, content));
        let engine = engine_uuid.map(str::to_string);
        let _ = self.db.update_record(msg_id, &mut |r: &mut TaskRecord| {
            if let Some((Value::Object(h), Value::Object(c))) = parts.take() {
                r.result_header = Some(h.into());
                r.result_content = Some(c.into());
                r.result_metadata = Some(Map::new().into());
                r.completed = Some(now);
                r.received = Some(now);
                if engine.is_some() {
                    r.engine_uuid = engine.clone();
                }
            }
        });
    }

    /// Saves stream/error/execute_input/execute_result/display_data output of a request.
    pub(crate) fn record_iopub(&mut self, inb: &Inbound) {
        if !self.records_enabled() {
            return;
        }
        let Some(parent_id) = inb.msg.parent_id().ok().and_then(|p| p.msg_id) else {
            return;
        };
        let Ok(content) = inb.msg.content_map() else {
            return;
        };
        let msg_type = inb.fields.msg_type.clone();
        let apply = move |r: &mut TaskRecord| match msg_type.as_str() {
            "stream" => {
                let text = content.get("text").and_then(Value::as_str).unwrap_or("");
                match content.get("name").and_then(Value::as_str) {
                    Some("stderr") => r.stderr.get_or_insert_with(String::new).push_str(text),
                    _ => r.stdout.get_or_insert_with(String::new).push_str(text),
                }
            }
            "error" => r.error = Some(content.clone()),
            "execute_input" => {
                r.execute_input = content
                    .get("code")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            "execute_result" => r.execute_result = Some(content.clone()),
            _ => {}
        };
        if !matches!(
            inb.fields.msg_type.as_str(),
            "stream" | "error" | "execute_input" | "execute_result"
        ) {
            return;
        }
        if !self.db.contains(&parent_id) {
            let mut rec = TaskRecord::empty(&parent_id);
            apply(&mut rec);
            let _ = self.db.add_record(rec);
        } else {
            let mut apply = apply;
            let _ = self.db.update_record(&parent_id, &mut apply);
        }
    }
}

/// Stock merges a request into an IOPub-created record: values already set win when the
/// request has none.
fn merge_request(existing: &mut TaskRecord, new: TaskRecord) {
    let stdout = existing.stdout.take().filter(|s| !s.is_empty());
    let stderr = existing.stderr.take().filter(|s| !s.is_empty());
    let execute_input = existing.execute_input.take();
    let execute_result = existing.execute_result.take();
    let error = existing.error.take();
    let result_header = existing.result_header.take();
    let result_metadata = existing.result_metadata.take();
    let result_content = existing.result_content.take();
    let result_buffers = std::mem::take(&mut existing.result_buffers);
    let completed = existing.completed.take();
    let started = existing.started.take();
    let received = existing.received.take();
    let resubmitted = existing.resubmitted.take();
    let engine_uuid = existing.engine_uuid.take();
    *existing = new;
    existing.stdout = stdout.or(existing.stdout.take());
    existing.stderr = stderr.or(existing.stderr.take());
    existing.execute_input = execute_input.or(existing.execute_input.take());
    existing.execute_result = execute_result.or(existing.execute_result.take());
    existing.error = error.or(existing.error.take());
    existing.result_header = result_header.or(existing.result_header.take());
    existing.result_metadata = result_metadata.or(existing.result_metadata.take());
    existing.result_content = result_content.or(existing.result_content.take());
    if !result_buffers.is_empty() {
        existing.result_buffers = result_buffers;
    }
    existing.completed = completed.or(existing.completed);
    existing.started = started.or(existing.started);
    existing.received = received.or(existing.received);
    existing.resubmitted = resubmitted.or(existing.resubmitted.take());
    existing.engine_uuid = existing.engine_uuid.take().or(engine_uuid);
}
