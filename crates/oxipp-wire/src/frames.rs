//! Splitting and joining multipart messages.
//!
//! Layout: `[ident…, <IDS|MSG>, signature, header, parent, metadata, content, buffer…]`.
//! The JSON frames are kept as the exact bytes received: signatures cover those bytes, and the
//! controller relays most messages without ever re-encoding them.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One frame of a multipart message. `Bytes` so that a message kept in the task database and
/// also relayed to an engine shares its buffers instead of copying them.
pub type Frame = Bytes;

/// The delimiter between routing frames and the message proper.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter in a {0}-frame message")]
    NoDelimiter(usize),
    #[error("{0} frames after the delimiter; a message needs at least 5")]
    TooFewFrames(usize),
    #[error("{part} is not valid JSON: {err}")]
    BadJson { part: &'static str, err: String },
    #[error("{0} is not a JSON object")]
    NotAnObject(&'static str),
    #[error("header lacks a string {0:?}")]
    MissingField(&'static str),
    #[error("message is not signed")]
    Unsigned,
    #[error("signature does not match")]
    BadSignature,
    #[error("signature already seen (replayed message)")]
    Replayed,
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// A parsed multipart message whose JSON parts are still raw bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub idents: Vec<Frame>,
    pub signature: Frame,
    pub header: Frame,
    pub parent: Frame,
    pub metadata: Frame,
    pub content: Frame,
    pub buffers: Vec<Frame>,
}

/// The header fields the controller routes on, decoded without building a full JSON tree.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct HeaderFields {
    pub msg_id: String,
    pub msg_type: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub date: Option<String>,
}

/// Just `msg_id`, for parent headers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ParentId {
    #[serde(default)]
    pub msg_id: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
}

impl Message {
    /// Splits raw frames. Never panics, whatever the input.
    pub fn parse(mut frames: Vec<Frame>) -> Result<Message, WireError> {
        let n = frames.len();
        let pos = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter(n))?;
        let after = n - pos - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames(after));
        }
        let buffers = frames.split_off(pos + 6);
        let mut rest = frames.split_off(pos);
        let idents = frames;
        // rest = [delim, sig, header, parent, metadata, content]
        let content = rest.pop().unwrap_or_default();
        let metadata = rest.pop().unwrap_or_default();
        let parent = rest.pop().unwrap_or_default();
        let header = rest.pop().unwrap_or_default();
        let signature = rest.pop().unwrap_or_default();
        Ok(Message {
            idents,
            signature,
            header,
            parent,
            metadata,
            content,
            buffers,
        })
    }

    /// The frames to send, in wire order.
    pub fn into_frames(self) -> Vec<Frame> {
        let mut out = Vec::with_capacity(self.idents.len() + 6 + self.buffers.len());
        out.extend(self.idents);
        out.push(Bytes::from_static(DELIMITER));
        out.push(self.signature);
        out.push(self.header);
        out.push(self.parent);
        out.push(self.metadata);
        out.push(self.content);
        out.extend(self.buffers);
        out
    }

    /// The four signed parts.
    pub fn signed_parts(&self) -> [&[u8]; 4] {
        [&self.header, &self.parent, &self.metadata, &self.content]
    }

    /// Total size in bytes of all frames (for size limits).
    pub fn byte_len(&self) -> usize {
        self.idents.iter().map(Bytes::len).sum::<usize>()
            + self.signature.len()
            + self.header.len()
            + self.parent.len()
            + self.metadata.len()
            + self.content.len()
            + self.buffers.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn header_fields(&self) -> Result<HeaderFields, WireError> {
        serde_json::from_slice(&self.header).map_err(|e| {
            if e.is_data() {
                WireError::MissingField("msg_id/msg_type")
            } else {
                WireError::BadJson {
                    part: "header",
                    err: e.to_string(),
                }
            }
        })
    }

    pub fn parent_id(&self) -> Result<ParentId, WireError> {
        serde_json::from_slice(&self.parent).map_err(|e| WireError::BadJson {
            part: "parent_header",
            err: e.to_string(),
        })
    }

    pub fn header_map(&self) -> Result<Map<String, Value>, WireError> {
        object(&self.header, "header")
    }

    pub fn parent_map(&self) -> Result<Map<String, Value>, WireError> {
        object(&self.parent, "parent_header")
    }

    pub fn metadata_map(&self) -> Result<Map<String, Value>, WireError> {
        object(&self.metadata, "metadata")
    }

    pub fn content_map(&self) -> Result<Map<String, Value>, WireError> {
        object(&self.content, "content")
    }
}

/// Decodes a JSON frame that must be an object.
pub fn object(raw: &[u8], part: &'static str) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WireError::NotAnObject(part)),
        Err(e) => Err(WireError::BadJson {
            part,
            err: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Frame {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn parse_and_join_round_trip() {
        let frames = vec![
            b("id1"),
            b("id2"),
            b("<IDS|MSG>"),
            b("sig"),
            b("{}"),
            b("{}"),
            b("{}"),
            b("{}"),
            b("buf"),
        ];
        let m = Message::parse(frames.clone()).unwrap();
        assert_eq!(m.idents, vec![b("id1"), b("id2")]);
        assert_eq!(m.buffers, vec![b("buf")]);
        assert_eq!(m.into_frames(), frames);
    }

    #[test]
    fn rejects_short_and_undelimited() {
        assert_eq!(Message::parse(vec![b("x")]), Err(WireError::NoDelimiter(1)));
        assert_eq!(
            Message::parse(vec![b("<IDS|MSG>"), b("s"), b("{}")]),
            Err(WireError::TooFewFrames(2))
        );
    }

    #[test]
    fn header_fields_errors_are_clear() {
        let mut m = Message::parse(vec![
            b("<IDS|MSG>"),
            b(""),
            b("{nope"),
            b("{}"),
            b("{}"),
            b("{}"),
        ])
        .unwrap();
        assert!(matches!(m.header_fields(), Err(WireError::BadJson { .. })));
        m.header = b(r#"{"msg_type": "x"}"#);
        assert!(matches!(m.header_fields(), Err(WireError::MissingField(_))));
        m.header = b(r#"{"msg_id": "a", "msg_type": "x", "session": "s"}"#);
        assert_eq!(m.header_fields().unwrap().msg_id, "a");
    }

    proptest! {
        /// Arbitrary frames never panic the parser, and whatever parses re-joins to the same frames.
        #[test]
        fn parser_total(frames in proptest::collection::vec(
            prop_oneof![
                Just(b"<IDS|MSG>".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..40),
            ], 0..12)) {
            let frames: Vec<Frame> = frames.into_iter().map(Bytes::from).collect();
            if let Ok(m) = Message::parse(frames.clone()) {
                let _ = m.header_fields();
                let _ = m.metadata_map();
                prop_assert_eq!(m.into_frames(), frames);
            }
        }
    }
}
