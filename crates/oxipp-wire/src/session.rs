//! Building and signing messages as one Session (one sender identity).
//!
//! msg_ids follow jupyter_client ≥ 7: `<session>_<pid>_<counter>`, so every message a process
//! creates is unique, which receivers need because they reject replayed signatures.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::frames::{Frame, Message, DELIMITER};
use crate::signing::Signer;
use crate::{dates, PROTOCOL_VERSION};

pub struct Session {
    pub id: String,
    pub username: String,
    signer: Signer,
    pid: u32,
    counter: AtomicU64,
}

/// A new random id in the stock format `8hex-24hex`.
pub fn new_id() -> String {
    let raw: [u8; 16] = rand::random();
    let h = hex::encode(raw);
    format!("{}-{}", &h[..8], &h[8..])
}

impl Session {
    pub fn new(id: String, signer: Signer) -> Self {
        let username = std::env::var("USER").unwrap_or_else(|_| "username".into());
        Session {
            id,
            username,
            signer,
            pid: std::process::id(),
            counter: AtomicU64::new(0),
        }
    }

    pub fn with_random_id(signer: Signer) -> Self {
        Self::new(new_id(), signer)
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn next_msg_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}_{}_{}", self.id, self.pid, n)
    }

    /// The encoded bytes of a fresh header for `msg_type`, written directly (no JSON tree):
    /// the controller makes one for every reply it originates.
    pub fn header_bytes(&self, msg_type: &str) -> Vec<u8> {
        self.new_header(msg_type).1
    }

    /// A fresh header for `msg_type` and its msg_id: senders that must file the request
    /// under its id before it can possibly be answered (clients) need both.
    pub fn new_header(&self, msg_type: &str) -> (String, Vec<u8>) {
        let msg_id = self.next_msg_id();
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let bytes = format!(
            "{{\"msg_id\":{},\"msg_type\":{},\"username\":{},\"session\":{},\"date\":\"{}\",\"version\":\"{}\"}}",
            q(&msg_id),
            q(msg_type),
            q(&self.username),
            q(&self.id),
            dates::now_iso(),
            PROTOCOL_VERSION
        )
        .into_bytes();
        (msg_id, bytes)
    }

    /// A fresh header object for `msg_type`.
    pub fn header(&self, msg_type: &str) -> Map<String, Value> {
        let v = json!({
            "msg_id": self.next_msg_id(),
            "msg_type": msg_type,
            "username": self.username,
            "session": self.id,
            "date": dates::now_iso(),
            "version": PROTOCOL_VERSION,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! object literal"),
        }
    }

    /// Builds a signed message. `parent` is the raw bytes of the parent header (usually the
    /// request's header frame, passed through untouched) or `None` for `{}`.
    pub fn build(
        &self,
        idents: Vec<Frame>,
        msg_type: &str,
        parent: Option<&Frame>,
        metadata: &Value,
        content: &Value,
        buffers: Vec<Frame>,
    ) -> Message {
        let header = Bytes::from(self.header_bytes(msg_type));
        let parent = parent.cloned().unwrap_or_else(|| Bytes::from_static(b"{}"));
        let mut m = Message {
            idents,
            signature: Bytes::new(),
            header,
            parent,
            metadata: Bytes::from(encode(metadata)),
            content: Bytes::from(encode(content)),
            buffers,
        };
        self.sign(&mut m);
        m
    }

    /// (Re-)signs a message whose JSON parts were created or rewritten here.
    pub fn sign(&self, m: &mut Message) {
        m.signature = Bytes::from(self.signer.sign(m.signed_parts()));
    }
}

/// JSON encoding used for every frame we create (compact, UTF-8, like orjson; receivers only
/// care that the signature covers the bytes).
pub fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

/// `true` if `frames` begins a message (used by tests and fakes).
pub fn is_delimiter(f: &[u8]) -> bool {
    f == DELIMITER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Verdict;

    #[test]
    fn built_messages_verify_and_are_unique() {
        let s = Session::with_random_id(Signer::new(b"k", "hmac-sha256").unwrap());
        let a = s.build(
            vec![],
            "x_request",
            None,
            &json!({}),
            &json!({"a": 1}),
            vec![],
        );
        let b = s.build(
            vec![],
            "x_request",
            Some(&a.header),
            &json!({}),
            &json!({"a": 1}),
            vec![],
        );
        assert_eq!(
            s.signer().verify(&a.signature, a.signed_parts()),
            Verdict::Valid
        );
        assert_ne!(a.signature, b.signature);
        let ha = a.header_fields().unwrap();
        assert_eq!(ha.msg_type, "x_request");
        assert_eq!(b.parent_id().unwrap().msg_id.unwrap(), ha.msg_id);
        assert!(ha.msg_id.starts_with(&s.id));
        let h: Value = serde_json::from_slice(&a.header).unwrap();
        assert_eq!(h["session"], s.id.as_str());
        assert_eq!(h["version"], PROTOCOL_VERSION);
        assert!(crate::dates::parse(h["date"].as_str().unwrap()).is_some());
    }
}
