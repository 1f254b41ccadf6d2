//! What one simulated engine says, without sockets.
//!
//! A simulated engine must cost almost nothing, so that a benchmark measures the controller and
//! not the engines, yet be indistinguishable from a stock engine on the wire: it registers with
//! its uuid, and answers every `apply_request` / `execute_request` with a correctly signed reply
//! whose parent is the request header and whose metadata has the keys the stock client and the
//! stock task scheduler read (`dependencies_met`, `status`, `engine`, and the broadcast fields
//! echoed back so broadcast and coalescing still work).

use bytes::Bytes;
use oxipp_wire::msg_types::{
    APPLY_REPLY, APPLY_REQUEST, EXECUTE_REPLY, EXECUTE_REQUEST, REGISTRATION_REPLY,
    REGISTRATION_REQUEST, UNREGISTRATION_REQUEST,
};
use oxipp_wire::session::encode;
use oxipp_wire::signing::Verdict;
use oxipp_wire::{dates, Frame, Message, Session, Signer};
use serde::Deserialize;
use serde_json::{json, Value};

/// `pickle.dumps(None, protocol=4)`: the single result buffer of a no-op apply, which a stock
/// client deserializes to `None`.
pub const PICKLED_NONE: &[u8] = b"\x80\x04N.";

/// How a shell message was handled.
#[derive(Debug)]
pub enum Outcome {
    /// Send this on the same socket (boxed: it is much larger than the other variants).
    Reply(Box<Message>),
    /// Not a request we answer (counted, not fatal: ipykernel answers more types than we do).
    Ignored,
    /// Unparsable frames or a bad signature: a controller bug worth counting.
    Rejected,
}

/// The request metadata fields a stock engine echoes in its reply.
#[derive(Debug, Default, Deserialize)]
struct RequestMeta {
    #[serde(default)]
    is_broadcast: Option<bool>,
    #[serde(default)]
    is_coalescing: Option<bool>,
    #[serde(default)]
    original_msg_id: Option<String>,
    #[serde(default)]
    label: Option<Value>,
}

/// One simulated engine's identity and counters.
pub struct EngineCore {
    pub uuid: String,
    /// The uuid as a JSON string literal, for the reply metadata.
    uuid_json: String,
    session: Session,
    verify: bool,
    execution_count: u64,
}

impl EngineCore {
    pub fn new(uuid: String, signer: Signer, verify: bool) -> Self {
        let session = Session::new(uuid.clone(), signer);
        EngineCore {
            uuid_json: serde_json::to_string(&uuid).unwrap_or_default(),
            uuid,
            session,
            verify,
            execution_count: 0,
        }
    }

    /// `registration_request {"uuid"}`, sent on a DEALER whose identity is the uuid.
    pub fn registration_request(&self) -> Message {
        let content = json!({ "uuid": self.uuid });
        self.session.build(
            vec![],
            REGISTRATION_REQUEST,
            None,
            &json!({}),
            &content,
            vec![],
        )
    }

    /// `unregistration_request {"id"}`, which a stock engine's nanny sends when the engine
    /// exits, so the controller forgets the engine at once instead of after ~10 missed beats.
    pub fn unregistration_request(&self, id: i64) -> Message {
        let content = json!({ "id": id });
        self.session.build(
            vec![],
            UNREGISTRATION_REQUEST,
            None,
            &json!({}),
            &content,
            vec![],
        )
    }

    /// The engine id from a `registration_reply`, or why registration failed.
    pub fn registration_result(&self, frames: Vec<Frame>) -> Result<i64, String> {
        let msg = Message::parse(frames).map_err(|e| e.to_string())?;
        self.check_signature(&msg)?;
        let header = msg.header_fields().map_err(|e| e.to_string())?;
        if header.msg_type != REGISTRATION_REPLY {
            return Err(format!(
                "expected {REGISTRATION_REPLY}, got {}",
                header.msg_type
            ));
        }
        let content = msg.content_map().map_err(|e| e.to_string())?;
        match (
            content.get("status").and_then(Value::as_str),
            content.get("id"),
        ) {
            (Some("ok"), Some(id)) => id.as_i64().ok_or_else(|| format!("bad id {id}")),
            _ => Err(format!("registration refused: {}", Value::Object(content))),
        }
    }

    fn check_signature(&self, msg: &Message) -> Result<(), String> {
        if !self.verify {
            return Ok(());
        }
        match self
            .session
            .signer()
            .verify(&msg.signature, msg.signed_parts())
        {
            Verdict::Valid => Ok(()),
            v => Err(format!("signature check failed: {v:?}")),
        }
    }

    /// Answers one message received on the shell ROUTER. The routing frames (the scheduler's
    /// identity, then the client's) are sent back unchanged so the reply retraces the route.
    pub fn handle_shell(&mut self, frames: Vec<Frame>) -> Outcome {
        let Ok(msg) = Message::parse(frames) else {
            return Outcome::Rejected;
        };
        if self.check_signature(&msg).is_err() {
            return Outcome::Rejected;
        }
        let Ok(header) = msg.header_fields() else {
            return Outcome::Rejected;
        };
        let (reply_type, content, buffers) = match header.msg_type.as_str() {
            APPLY_REQUEST => (
                APPLY_REPLY,
                Bytes::from_static(br#"{"status":"ok"}"#),
                vec![Bytes::from_static(PICKLED_NONE)],
            ),
            EXECUTE_REQUEST => {
                self.execution_count += 1;
                let content = json!({
                    "status": "ok",
                    "execution_count": self.execution_count,
                    "user_expressions": {},
                    "payload": [],
                });
                (EXECUTE_REPLY, Bytes::from(encode(&content)), vec![])
            }
            _ => return Outcome::Ignored,
        };
        let meta: RequestMeta = serde_json::from_slice(&msg.metadata).unwrap_or_default();
        // The metadata is written directly (same keys and values as a JSON object built
        // with serde_json, which cost the simulated engines more CPU than the controller
        // spends on the task).
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let metadata = format!(
            "{{\"started\":\"{}\",\"dependencies_met\":true,\"engine\":{},\"status\":\"ok\",\"is_broadcast\":{},\"is_coalescing\":{},\"original_msg_id\":{},\"label\":{}}}",
            dates::now_iso(),
            self.uuid_json,
            meta.is_broadcast.unwrap_or(false),
            meta.is_coalescing.unwrap_or(false),
            q(meta.original_msg_id.as_deref().unwrap_or_default()),
            meta.label.unwrap_or(Value::Null),
        );
        let mut reply = Message {
            idents: msg.idents,
            signature: Bytes::new(),
            header: Bytes::from(self.session.header_bytes(reply_type)),
            parent: msg.header,
            metadata: Bytes::from(metadata),
            content,
            buffers,
        };
        self.session.sign(&mut reply);
        Outcome::Reply(Box::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"test-key", "hmac-sha256").unwrap()
    }

    fn request(msg_type: &str, metadata: Value) -> Message {
        let client = Session::with_random_id(signer());
        let idents = vec![
            Bytes::from_static(b"task_out"),
            Bytes::from_static(b"client-1"),
        ];
        client.build(
            idents,
            msg_type,
            None,
            &metadata,
            &json!({}),
            vec![Bytes::from_static(b"f")],
        )
    }

    #[test]
    fn apply_reply_echoes_route_parent_and_broadcast_fields() {
        let mut e = EngineCore::new("e-1".into(), signer(), true);
        let req = request(
            APPLY_REQUEST,
            json!({"is_broadcast": true, "is_coalescing": true, "original_msg_id": "m0"}),
        );
        let Outcome::Reply(rep) = e.handle_shell(req.clone().into_frames()) else {
            panic!("no reply")
        };
        assert_eq!(rep.idents, req.idents);
        assert_eq!(rep.parent, req.header);
        assert_eq!(rep.buffers, vec![Bytes::from_static(PICKLED_NONE)]);
        assert_eq!(
            signer().verify(&rep.signature, rep.signed_parts()),
            Verdict::Valid
        );
        let md = rep.metadata_map().unwrap();
        assert_eq!(md["engine"], "e-1");
        assert_eq!(md["dependencies_met"], true);
        assert_eq!(md["is_coalescing"], true);
        assert_eq!(md["original_msg_id"], "m0");
        assert_eq!(rep.header_fields().unwrap().session, "e-1");
    }

    #[test]
    fn execute_reply_counts_and_bad_signatures_are_rejected() {
        let mut e = EngineCore::new("e-2".into(), signer(), true);
        let Outcome::Reply(rep) = e.handle_shell(request(EXECUTE_REQUEST, json!({})).into_frames())
        else {
            panic!("no reply")
        };
        assert_eq!(rep.header_fields().unwrap().msg_type, EXECUTE_REPLY);
        assert_eq!(rep.content_map().unwrap()["execution_count"], 1);
        let mut forged = request(APPLY_REQUEST, json!({}));
        forged.signature = Bytes::from_static(b"00");
        assert!(matches!(
            e.handle_shell(forged.into_frames()),
            Outcome::Rejected
        ));
        let other = request("kernel_info_request", json!({}));
        assert!(matches!(
            e.handle_shell(other.into_frames()),
            Outcome::Ignored
        ));
    }

    #[test]
    fn registration_round_trip() {
        let e = EngineCore::new("e-3".into(), signer(), true);
        let req = e.registration_request();
        assert_eq!(req.content_map().unwrap()["uuid"], "e-3");
        let hub = Session::with_random_id(signer());
        let ok = hub.build(
            vec![],
            REGISTRATION_REPLY,
            None,
            &json!({}),
            &json!({"status": "ok", "id": 7}),
            vec![],
        );
        assert_eq!(e.registration_result(ok.into_frames()), Ok(7));
        let err = hub.build(
            vec![],
            REGISTRATION_REPLY,
            None,
            &json!({}),
            &json!({"status": "error"}),
            vec![],
        );
        assert!(e.registration_result(err.into_frames()).is_err());
    }
}
