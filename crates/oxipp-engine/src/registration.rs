//! Registering with the Hub, and unregistering on the way out (spec §4.1–4.2).

use std::time::{Duration, Instant};

use oxipp_wire::signing::Verdict;
use oxipp_wire::sockets::{new_socket, recv_frames, send_frames, Context, SocketSpec, SocketType};
use oxipp_wire::{msg_types as mt, Message, Session};
use serde_json::{json, Value};

use crate::conn::Endpoints;
use crate::EngineError;

/// What the Hub granted.
#[derive(Debug, Clone, Copy)]
pub struct Granted {
    pub id: u32,
    pub hb_period: Duration,
}

/// Sends `registration_request {"uuid", "id"?}` from a DEALER whose identity is the uuid and
/// waits up to `timeout` for the reply. Unsigned or badly signed answers are ignored (they
/// cannot come from our controller), so a garbage sender cannot fake a registration.
pub fn register(
    ctx: &Context,
    ep: &Endpoints,
    session: &Session,
    requested_id: Option<u32>,
    timeout: Duration,
) -> Result<Granted, EngineError> {
    let s = new_socket(
        ctx,
        SocketType::DEALER,
        &SocketSpec {
            identity: Some(session.id.as_bytes()),
            subscribe_all: false,
        },
    )?;
    s.set_linger(0)?;
    s.connect(&ep.registration)?;
    let content = match requested_id {
        Some(id) => json!({"uuid": session.id, "id": id}),
        None => json!({"uuid": session.id}),
    };
    let req = session.build(
        vec![],
        mt::REGISTRATION_REQUEST,
        None,
        &json!({}),
        &content,
        vec![],
    );
    send_frames(&s, req.into_frames())?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            unregister(ctx, ep, session, None);
            return Err(EngineError::Timeout(timeout.as_secs_f64()));
        }
        if s.poll(zmq::POLLIN, left.as_millis().max(1) as i64)? == 0 {
            continue;
        }
        let frames = recv_frames(&s, true)?;
        let Ok(m) = Message::parse(frames) else {
            tracing::warn!("garbage on the registration socket, ignored");
            continue;
        };
        if session.signer().verify(&m.signature, m.signed_parts()) != Verdict::Valid {
            tracing::warn!("badly signed registration reply, ignored");
            continue;
        }
        let c = m.content_map().unwrap_or_default();
        if c.get("status").and_then(Value::as_str) != Some("ok") {
            let why = format!(
                "{}: {}",
                c.get("ename").and_then(Value::as_str).unwrap_or("error"),
                c.get("evalue").and_then(Value::as_str).unwrap_or("")
            );
            return Err(EngineError::Refused(why));
        }
        let id = c
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| EngineError::Refused("reply without an id".into()))?;
        // hb_period is in milliseconds on the wire (stock HeartMonitor.period)
        let ms = c.get("hb_period").and_then(Value::as_f64).unwrap_or(3000.0);
        if let Some(want) = requested_id.filter(|w| *w != id) {
            tracing::warn!("requested engine id {want}, got {id}");
        }
        return Ok(Granted {
            id,
            hb_period: Duration::from_secs_f64((ms / 1000.0).clamp(0.001, 3600.0)),
        });
    }
}

/// Best effort `unregistration_request {"id": id}` from a fresh identity-less DEALER (like the
/// stock nanny), so the Hub drops the engine at once instead of after missed heartbeats.
pub fn unregister(ctx: &Context, ep: &Endpoints, session: &Session, id: Option<u32>) {
    let r = (|| -> zmq::Result<()> {
        let s = new_socket(ctx, SocketType::DEALER, &SocketSpec::default())?;
        s.set_linger(1000)?;
        s.connect(&ep.registration)?;
        let m = session.build(
            vec![],
            mt::UNREGISTRATION_REQUEST,
            None,
            &json!({}),
            &json!({ "id": id }),
            vec![],
        );
        send_frames(&s, m.into_frames())
    })();
    if let Err(e) = r {
        tracing::warn!("could not send unregistration_request: {e}");
    }
}
