//! A simulated client: the sockets and messages of a stock `ipyparallel.Client`, minus Python.
//!
//! It lets a benchmark submit requests much faster than a real client can (a stock client
//! spends milliseconds pickling each task), so that the controller is what saturates.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use oxipp_wire::msg_types::{
    CONNECTION_REPLY, CONNECTION_REQUEST, REGISTRATION_NOTIFICATION, UNREGISTRATION_NOTIFICATION,
};
use oxipp_wire::session::encode;
use oxipp_wire::signing::Verdict;
use oxipp_wire::{Frame, Message, Session};
use oxipp_zmtp::{Options, Socket, SocketType};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conn::Conn;
use crate::sock::{send, wait};

/// A reply as the benchmark loops need it: who it answers and whether it succeeded.
#[derive(Debug)]
pub struct Reply {
    pub parent_msg_id: String,
    pub ok: bool,
    /// `ename: evalue` for error replies, for the report.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct StatusContent {
    #[serde(default)]
    status: String,
    #[serde(default)]
    ename: Option<String>,
    #[serde(default)]
    evalue: Option<String>,
}

/// The client's sockets are [`oxipp_zmtp`] sockets driven by the calling thread: they make
/// progress (connect, handshake, read, write) only inside its calls (see [`crate::sock`]).
pub struct SimClient {
    pub conn: Conn,
    pub session: Session,
}

impl SimClient {
    pub fn new(conn: &Conn) -> SimClient {
        SimClient {
            conn: conn.clone(),
            session: Session::with_random_id(conn.signer.clone()),
        }
    }

    /// An identity-less DEALER connected to a client-side port (`mux`, `task`, `registration`…).
    /// What is sent before the connection is up waits for it.
    pub fn dealer(&self, port: u16) -> Result<Socket> {
        let mut s = Socket::new(SocketType::Dealer, Options::default())?;
        s.connect(&self.conn.client_url(port))?;
        Ok(s)
    }

    /// A SUB on the Hub's notification PUB, subscribed to everything.
    pub fn notifications(&self) -> Result<Socket> {
        let mut s = Socket::new(SocketType::Sub, Options::default())?;
        s.subscribe(b"");
        s.connect(&self.conn.client_url(self.conn.client.notification))?;
        Ok(s)
    }

    /// Builds a signed request. The metadata and content are pre-encoded because throughput
    /// loops send the same ones millions of times; the header (fresh msg_id and date) and the
    /// signature are new for every message, as receivers reject replayed signatures.
    pub fn request(
        &self,
        route: Vec<Frame>,
        msg_type: &str,
        metadata: &Frame,
        content: &Frame,
        buffers: &[Frame],
    ) -> (String, Message) {
        let (msg_id, header) = self.session.new_header(msg_type);
        let mut m = Message {
            idents: route,
            signature: Bytes::new(),
            header: Bytes::from(header),
            parent: Bytes::from_static(b"{}"),
            metadata: metadata.clone(),
            content: content.clone(),
            buffers: buffers.to_vec(),
        };
        self.session.sign(&mut m);
        (msg_id, m)
    }

    /// Verifies and decodes a reply received on a DEALER.
    pub fn parse_reply(&self, frames: Vec<Frame>) -> Result<Reply> {
        let m = Message::parse(frames)?;
        match self.session.signer().verify(&m.signature, m.signed_parts()) {
            Verdict::Valid => {}
            v => bail!("reply signature check failed: {v:?}"),
        }
        let parent = m.parent_id()?;
        let Some(parent_msg_id) = parent.msg_id else {
            bail!(
                "reply without a parent msg_id: {}",
                String::from_utf8_lossy(&m.header)
            );
        };
        let c: StatusContent = serde_json::from_slice(&m.content).context("reply content")?;
        let ok = c.status == "ok";
        let error = (!ok).then(|| {
            format!(
                "{}: {} ({})",
                c.ename.unwrap_or_default(),
                c.evalue.unwrap_or_default(),
                c.status
            )
        });
        Ok(Reply {
            parent_msg_id,
            ok,
            error,
        })
    }

    /// `connection_request` on the query channel: the engines the Hub reports as registered.
    pub fn connection_request(
        &self,
        query: &mut Socket,
        timeout: Duration,
    ) -> Result<Vec<(i64, String)>> {
        let empty = Bytes::from_static(b"{}");
        let (msg_id, m) = self.request(vec![], CONNECTION_REQUEST, &empty, &empty, &[]);
        send(query, m.into_frames())?;
        query.flush();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no {CONNECTION_REPLY} within {:.1} s",
                    timeout.as_secs_f64()
                );
            }
            wait(query, left)?;
            let Some(frames) = query.recv() else {
                continue;
            };
            let m = Message::parse(frames)?;
            if m.parent_id()?.msg_id.as_deref() != Some(msg_id.as_str()) {
                continue; // a late reply to an earlier request
            }
            let content = m.content_map()?;
            let engines = content
                .get("engines")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            return Ok(engines
                .into_iter()
                .filter_map(|(id, uuid)| Some((id.parse().ok()?, uuid.as_str()?.to_string())))
                .collect());
        }
    }
}

/// Which of `ours` the Hub has announced, fed from notification and connection replies.
pub struct RegistrationWatch {
    ours: HashSet<String>,
    seen: HashSet<String>,
    pub unregistered: usize,
}

impl RegistrationWatch {
    pub fn new(ours: &[String]) -> Self {
        RegistrationWatch {
            ours: ours.iter().cloned().collect(),
            seen: HashSet::new(),
            unregistered: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.len()
    }

    pub fn complete(&self) -> bool {
        self.seen.len() == self.ours.len()
    }

    /// Drains the notification SUB without blocking.
    pub fn drain(&mut self, sub: &mut Socket) {
        while let Some(frames) = sub.recv() {
            let Ok(m) = Message::parse(frames) else {
                continue;
            };
            let (Ok(h), Ok(c)) = (m.header_fields(), m.content_map()) else {
                continue;
            };
            let uuid = c.get("uuid").and_then(Value::as_str).unwrap_or_default();
            if !self.ours.contains(uuid) {
                continue;
            }
            match h.msg_type.as_str() {
                REGISTRATION_NOTIFICATION => {
                    self.seen.insert(uuid.to_string());
                }
                UNREGISTRATION_NOTIFICATION => self.unregistered += 1,
                _ => {}
            }
        }
    }

    /// Counts engines listed in a `connection_reply`.
    pub fn absorb(&mut self, engines: &[(i64, String)]) {
        for (_, uuid) in engines {
            if self.ours.contains(uuid) {
                self.seen.insert(uuid.clone());
            }
        }
    }
}

/// The metadata a stock `LoadBalancedView` sends with every task.
pub fn lb_metadata() -> Frame {
    Bytes::from(encode(&json!({
        "after": [], "follow": [], "timeout": 0.0, "targets": [], "retries": 0, "label": null,
    })))
}

/// Small stand-ins for the buffers of `pack_apply_message(f, (), {})`: the controller must relay
/// them byte-exact but never looks inside, and simulated engines do not unpickle them.
pub fn apply_buffers() -> Vec<Frame> {
    vec![
        Bytes::from_static(b"\x80\x04\x95 canned function (not unpickled by simulated engines) ."),
        Bytes::from_static(b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05nargs\x94K\x00\x8c\x0bkw_keys\x94]\x94u."),
    ]
}
