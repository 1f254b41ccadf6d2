//! Registering with the Hub, and unregistering on the way out (spec §4.1–4.2), from
//! [`oxipp_zmtp`] DEALERs driven by the calling thread.

use std::time::{Duration, Instant};

use oxipp_wire::signing::Verdict;
use oxipp_wire::{msg_types as mt, Message, Session};
use oxipp_zmtp::{Options, Socket, SocketType};
use serde_json::{json, Value};

use crate::conn::Endpoints;
use crate::EngineError;

/// What the Hub granted.
#[derive(Debug, Clone, Copy)]
pub struct Granted {
    pub id: u32,
    pub hb_period: Duration,
    /// The controller notices this engine's death by its closed connections (oxipp's does,
    /// stock's only after missed heartbeats): otherwise a nanny process should report it.
    pub notices_closed_connections: bool,
}

/// Sends `registration_request {"uuid", "id"?}` from a DEALER whose identity is the uuid and
/// waits up to `timeout` for the reply. Unsigned or badly signed answers are ignored (they
/// cannot come from our controller), so a garbage sender cannot fake a registration.
pub fn register(
    ep: &Endpoints,
    session: &Session,
    requested_id: Option<u32>,
    timeout: Duration,
) -> Result<Granted, EngineError> {
    let mut s = dealer(
        crate::runtime::socket_options(&session.id),
        &ep.registration,
    )?;
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
    // held until the controller is connected, then written
    s.send(req.into_frames())
        .map_err(|e| EngineError::Io(format!("registration send: {e}")))?;
    s.flush();
    let deadline = Instant::now() + timeout;
    loop {
        let frames = match s.recv() {
            Some(f) => f,
            None => {
                while s.event().is_some() {}
                s.flush();
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    unregister(ep, session, None);
                    return Err(EngineError::Timeout(timeout.as_secs_f64()));
                }
                oxipp_zmtp::poll(&[&s], Some(left))
                    .map_err(|e| EngineError::Io(format!("registration poll: {e}")))?;
                continue;
            }
        };
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
            notices_closed_connections: c
                .get(mt::NOTICES_CLOSED_CONNECTIONS)
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
}

/// Best effort `unregistration_request {"id": id}` from a fresh identity-less DEALER (like the
/// stock nanny), so the Hub drops the engine at once instead of after missed heartbeats.
/// Waits until it is written (connecting first), at most [`UNREGISTER_LINGER`] (libzmq's
/// linger of the stock nanny's socket).
pub fn unregister(ep: &Endpoints, session: &Session, id: Option<u32>) {
    let r = (|| -> Result<(), EngineError> {
        let mut s = dealer(Options::default(), &ep.registration)?;
        let m = session.build(
            vec![],
            mt::UNREGISTRATION_REQUEST,
            None,
            &json!({}),
            &json!({ "id": id }),
            vec![],
        );
        s.send(m.into_frames())
            .map_err(|e| EngineError::Io(e.to_string()))?;
        let deadline = Instant::now() + UNREGISTER_LINGER;
        loop {
            s.flush();
            // a DEALER holds what it sends until a peer is connected, then queues it there
            if s.peer_count() > 0 && s.queued_bytes() == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout(UNREGISTER_LINGER.as_secs_f64()));
            }
            oxipp_zmtp::poll(&[&s], Some(left)).map_err(|e| EngineError::Io(e.to_string()))?;
            while s.recv().is_some() {}
            while s.event().is_some() {}
        }
    })();
    if let Err(e) = r {
        tracing::warn!("could not send unregistration_request: {e}");
    }
}

/// [`unregister`] engine `id` with a session of its own, from an engine's connection info:
/// what a nanny process does once the engine it watches has exited.
pub fn unregister_engine(connection_json: &str, id: u32) -> Result<(), EngineError> {
    let ep = Endpoints::parse(connection_json)?;
    let signer = oxipp_wire::signing::Signer::new(ep.key.as_bytes(), &ep.signature_scheme)
        .map_err(EngineError::Config)?;
    let session = Session::new(oxipp_wire::session::new_id(), signer);
    unregister(&ep, &session, Some(id));
    Ok(())
}

/// How long [`unregister`] tries to deliver its message.
const UNREGISTER_LINGER: Duration = Duration::from_secs(1);

fn dealer(opts: Options, url: &str) -> Result<Socket, EngineError> {
    let mut s = Socket::new(SocketType::Dealer, opts)
        .map_err(|e| EngineError::Io(format!("socket: {e}")))?;
    s.connect(url)
        .map_err(|e| EngineError::Config(format!("cannot connect to {url}: {e}")))?;
    Ok(s)
}
