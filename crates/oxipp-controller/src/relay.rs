//! Direct (mux) and control relays, and the IOPub relay.
//!
//! mux and control are transparent ROUTER↔ROUTER relays that swap the first two routing
//! frames; the Hub records mux traffic on the way through. Unlike stock, a request addressed
//! to an engine that is not registered is answered at once with an `EngineError` instead of
//! being dropped by ZeroMQ (which left the client waiting forever).

use std::time::Instant;

use oxipp_wire::errors::{error_content, py_repr};
use oxipp_wire::{msg_types as mt, Frame};
use serde_json::{json, Value};

use crate::core::{ident_str, Controller, Inbound};
use crate::outbox::{Outbox, Sock};

impl Controller {
    pub(crate) fn on_mux_request(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let Some((client, target)) = two_idents(&inb) else {
            self.stats.bump("mux_no_target");
            return;
        };
        let uuid = ident_str(&target);
        let Some(eid) = self.registry.id_of(&uuid) else {
            self.reject_unknown_target(&inb, client, target, Sock::MuxClient, out);
            return;
        };
        self.record_request(&inb, "mux", Some(&uuid), None);
        self.book.pending.insert(inb.fields.msg_id.clone());
        self.book
            .engine(eid)
            .queue
            .insert(inb.fields.msg_id.clone());
        let mut msg = inb.msg;
        msg.idents = vec![target, client];
        out.send(Sock::MuxEngine, msg.into_frames());
    }

    pub(crate) fn on_mux_reply(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let Some((engine, client)) = two_idents(&inb) else {
            self.stats.bump("mux_reply_no_client");
            return;
        };
        let uuid = ident_str(&engine);
        if let Some(parent_id) = inb.msg.parent_id().ok().and_then(|p| p.msg_id) {
            let eid = self.registry.id_of(&uuid);
            let aborted = reply_status(&inb) == "aborted";
            if self.book.finish(&parent_id, eid, !aborted)
                || self.book.recently_completed(&parent_id)
            {
                self.record_result(&parent_id, &inb, Some(&uuid), None);
            }
        }
        let mut msg = inb.msg;
        msg.idents = vec![client, engine];
        out.send(Sock::MuxClient, msg.into_frames());
    }

    pub(crate) fn on_control_request(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let Some((client, target)) = two_idents(&inb) else {
            self.stats.bump("control_no_target");
            return;
        };
        let uuid = ident_str(&target);
        if self.registry.id_of(&uuid).is_none() {
            self.reject_unknown_target(&inb, client, target, Sock::ControlClient, out);
            return;
        }
        let mut msg = inb.msg;
        msg.idents = vec![target, client];
        out.send(Sock::ControlEngine, msg.into_frames());
    }

    pub(crate) fn on_control_reply(&mut self, inb: Inbound, out: &mut dyn Outbox) {
        let Some((engine, client)) = two_idents(&inb) else {
            self.stats.bump("control_reply_no_client");
            return;
        };
        let mut msg = inb.msg;
        msg.idents = vec![client, engine];
        out.send(Sock::ControlClient, msg.into_frames());
    }

    /// Answers a request for an engine that is not registered, so the sender does not hang.
    fn reject_unknown_target(
        &mut self,
        inb: &Inbound,
        client: Frame,
        target: Frame,
        sock: Sock,
        out: &mut dyn Outbox,
    ) {
        self.stats.bump("unknown_target");
        let uuid = ident_str(&target);
        tracing::warn!(
            "{sock:?}: client sent {} to unknown engine {uuid:?}",
            inb.fields.msg_type
        );
        let content = error_content(
            "EngineError",
            &format!(
                "Engine {} is not registered (it may have died or never existed)",
                py_repr(&uuid)
            ),
        );
        let reply = self.hub_session.build(
            vec![client, target],
            &mt::reply_type(&inb.fields.msg_type),
            Some(&inb.msg.header),
            &json!({"status": "error", "engine": uuid, "dependencies_met": true}),
            &content,
            vec![],
        );
        out.send(sock, reply.into_frames());
    }

    /// IOPub: relay everything unchanged; record output; `shutdown_reply` unregisters.
    pub(crate) fn on_iopub(&mut self, inb: Inbound, now: Instant, out: &mut dyn Outbox) {
        out.send(Sock::IopubOut, inb.msg.clone().into_frames());
        match inb.fields.msg_type.as_str() {
            mt::STATUS | mt::IOPUB_WELCOME => {}
            mt::SHUTDOWN_REPLY => {
                if let Some(id) = self.registry.id_of(&inb.fields.session) {
                    self.unregister_engine(id, "shutdown_reply on IOPub", now, out);
                }
            }
            _ => self.record_iopub(&inb),
        }
    }
}

fn two_idents(inb: &Inbound) -> Option<(Frame, Frame)> {
    match inb.msg.idents.as_slice() {
        [a, b, ..] => Some((a.clone(), b.clone())),
        _ => None,
    }
}

/// `status` of a reply: metadata first (what schedulers use), else content.
pub(crate) fn reply_status(inb: &Inbound) -> String {
    let from = |raw: &[u8]| -> Option<String> {
        let v: Value = serde_json::from_slice(raw).ok()?;
        v.get("status")?.as_str().map(str::to_string)
    };
    from(&inb.msg.metadata)
        .or_else(|| from(&inb.msg.content))
        .unwrap_or_default()
}
