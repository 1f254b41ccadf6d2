//! Building the messages an engine sends: replies with stock reply metadata, IOPub messages
//! with stock topics, and buffered stream output.

use bytes::Bytes;
use oxipp_wire::{dates, msg_types as mt, Frame, Session};
use serde_json::{json, Value};

use crate::queue::Request;

/// Who we are, for metadata and topics.
pub struct Identity {
    pub session: Session,
    pub id: u32,
}

impl Identity {
    fn engine_md(&self) -> Value {
        json!({ "engine": self.session.id })
    }

    /// Reply metadata exactly as stock `init_metadata` + `finish_metadata` build it (spec §3.4).
    pub fn reply_metadata(
        &self,
        req: &Request,
        status: &str,
        content: &Value,
        deps_met: bool,
    ) -> Value {
        let started = req.started.get().cloned().unwrap_or_else(dates::now_iso);
        let unmet = content.get("ename").and_then(Value::as_str) == Some("UnmetDependency");
        let mut md = json!({
            "started": started,
            "dependencies_met": deps_met && !(status == "error" && unmet),
            "engine": self.session.id,
            "is_broadcast": req.is_broadcast,
            "is_coalescing": req.is_coalescing,
            "original_msg_id": req.original_msg_id,
            "label": req.label,
            "status": status,
        });
        if status == "error" {
            md["engine_info"] = json!({"engine_uuid": self.session.id, "engine_id": self.id});
        }
        md
    }

    /// `<type>_reply` to `req`, routed back along the request's identities.
    pub fn reply(
        &self,
        req: &Request,
        content: &Value,
        buffers: Vec<Frame>,
        status: &str,
        deps_met: bool,
    ) -> Vec<Frame> {
        let md = self.reply_metadata(req, status, content, deps_met);
        let rtype = mt::reply_type(&req.msg_type);
        self.session
            .build(
                req.idents.clone(),
                &rtype,
                Some(&req.header),
                &md,
                content,
                buffers,
            )
            .into_frames()
    }

    /// A control reply (no execution metadata; stock's patched Session adds `engine`).
    pub fn control_reply(&self, req: &Request, msg_type: &str, content: &Value) -> Vec<Frame> {
        self.session
            .build(
                req.idents.clone(),
                msg_type,
                Some(&req.header),
                &self.engine_md(),
                content,
                vec![],
            )
            .into_frames()
    }

    /// `{"status": "aborted"}` reply to a request that never ran.
    pub fn aborted(&self, req: &Request) -> Vec<Frame> {
        let c = json!({"status": "aborted"});
        self.reply(req, &c, vec![], "aborted", true)
    }

    /// An IOPub message with topic `engine.<id>.<kind>` (or `topic` verbatim).
    pub fn iopub(
        &self,
        msg_type: &str,
        content: &Value,
        parent: Option<&Frame>,
        topic: Option<&str>,
        buffers: Vec<Frame>,
    ) -> Vec<Frame> {
        let topic = match topic {
            Some(t) => t.to_string(),
            None => format!("engine.{}.{}", self.id, topic_kind(msg_type, content)),
        };
        // stock sends stream/execute_result/shutdown_reply through objects other than the
        // patched Session, so only those lack metadata.engine
        let md = match msg_type {
            mt::STREAM | mt::EXECUTE_RESULT | mt::SHUTDOWN_REPLY => json!({}),
            _ => self.engine_md(),
        };
        let topic = Bytes::from(topic.into_bytes());
        self.session
            .build(vec![topic], msg_type, parent, &md, content, buffers)
            .into_frames()
    }

    pub fn status(&self, state: &str, parent: Option<&Frame>) -> Vec<Frame> {
        self.iopub(
            mt::STATUS,
            &json!({"execution_state": state}),
            parent,
            None,
            vec![],
        )
    }
}

/// The topic suffix stock engines use for `msg_type`.
fn topic_kind(msg_type: &str, content: &Value) -> String {
    match msg_type {
        mt::STREAM => content
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("stdout")
            .to_string(),
        mt::DISPLAY_DATA => "displaypub".into(),
        mt::SHUTDOWN_REPLY => "shutdown".into(),
        other => other.to_string(),
    }
}

/// Stream text not yet published, coalesced per (name, parent).
#[derive(Default)]
pub struct StreamBuf {
    chunks: Vec<(String, Option<Frame>, String)>,
}

impl StreamBuf {
    pub fn push(&mut self, name: &str, parent: Option<Frame>, text: &str) {
        if let Some((n, p, t)) = self.chunks.last_mut() {
            if n == name && *p == parent {
                t.push_str(text);
                return;
            }
        }
        self.chunks
            .push((name.to_string(), parent, text.to_string()));
    }

    /// Takes everything buffered as ready-to-send `stream` messages.
    pub fn drain(&mut self, me: &Identity) -> Vec<Vec<Frame>> {
        std::mem::take(&mut self.chunks)
            .into_iter()
            .map(|(name, parent, text)| {
                me.iopub(
                    mt::STREAM,
                    &json!({"name": name, "text": text}),
                    parent.as_ref(),
                    None,
                    vec![],
                )
            })
            .collect()
    }
}
