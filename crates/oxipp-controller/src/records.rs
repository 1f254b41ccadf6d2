//! Writing task records: requests, results and IOPub output, as the stock Hub does.

use chrono::Utc;
use oxipp_taskdb::TaskRecord;
use oxipp_wire::dates;
use serde_json::{Map, Value};

use crate::core::{Controller, Inbound};

fn date_of(m: &Map<String, Value>, key: &str) -> Option<chrono::DateTime<Utc>> {
    m.get(key).and_then(Value::as_str).and_then(dates::parse)
}

impl Controller {
    pub(crate) fn records_enabled(&self) -> bool {
        self.db.backend_name() != "nodb"
    }

    /// Records a new request (mux, task or broadcast), merging with a record that IOPub
    /// output may have created first. `metadata`: the request's, if the caller parsed it.
    pub(crate) fn record_request(
        &mut self,
        inb: &Inbound,
        queue: &str,
        engine_uuid: Option<&str>,
        metadata: Option<Map<String, Value>>,
    ) {
        if !self.records_enabled() {
            return;
        }
        let header = inb.msg.header_map().ok();
        let metadata = metadata.or_else(|| inb.msg.metadata_map().ok());
        let label = metadata
            .as_ref()
            .and_then(|m| m.get("label"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let rec = TaskRecord {
            msg_id: inb.fields.msg_id.clone(),
            submitted: header.as_ref().and_then(|h| date_of(h, "date")),
            header,
            metadata,
            content: inb.msg.content_map().ok(),
            buffers: inb.msg.buffers.clone(),
            client_uuid: Some(inb.fields.session.clone()),
            engine_uuid: engine_uuid.map(str::to_string),
            queue: Some(queue.to_string()),
            stdout: Some(String::new()),
            stderr: Some(String::new()),
            label,
            ..TaskRecord::empty(&inb.fields.msg_id)
        };
        let msg_id = rec.msg_id.clone();
        if self.db.contains(&msg_id) {
            let mut fresh = Some(rec);
            let res = self
                .db
                .update_record(&msg_id, &mut |existing: &mut TaskRecord| {
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

    /// Records the reply to `msg_id`. `metadata`: the reply's, if the caller parsed it.
    pub(crate) fn record_result(
        &mut self,
        msg_id: &str,
        reply: &Inbound,
        engine_uuid: Option<&str>,
        metadata: Option<Map<String, Value>>,
    ) {
        if !self.records_enabled() {
            return;
        }
        let header = reply.msg.header_map().ok();
        let md = metadata.or_else(|| reply.msg.metadata_map().ok());
        let completed = header.as_ref().and_then(|h| date_of(h, "date"));
        let started = md.as_ref().and_then(|m| date_of(m, "started"));
        let engine = engine_uuid.map(str::to_string).or_else(|| {
            md.as_ref()
                .and_then(|m| m.get("engine"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let content = reply.msg.content_map().ok();
        let buffers = reply.msg.buffers.clone();
        let mut parts = Some((header, md, content, buffers));
        let res = self.db.update_record(msg_id, &mut |r: &mut TaskRecord| {
            if let Some((h, m, c, b)) = parts.take() {
                r.result_header = h;
                r.result_metadata = m;
                r.result_content = c;
                r.result_buffers = b;
                r.started = started;
                r.completed = completed.or_else(|| Some(Utc::now()));
                r.received = Some(Utc::now());
                if engine.is_some() {
                    r.engine_uuid = engine.clone();
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
                r.result_header = Some(h);
                r.result_content = Some(c);
                r.result_metadata = Some(Map::new());
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
