//! The heart: echoes every ping and watches for the controller going away.
//!
//! It runs in its own thread and touches nothing but its two sockets and an atomic flag, so a
//! task holding the GIL for minutes never makes the engine look dead (a stock engine's heart is
//! a zmq device thread for the same reason).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxipp_wire::sockets::{new_socket, recv_frames, send_frames, Context, SocketSpec, SocketType};

use crate::conn::Endpoints;

/// Runs the heart until `stop` is set. Calls `on_flatline` once (and returns) when more than
/// `max_misses` check periods of `hb_period + 500 ms` (stock's watchdog interval) pass without
/// a ping.
pub fn run(
    ctx: Context,
    ep: Endpoints,
    uuid: String,
    hb_period: Duration,
    max_misses: u32,
    stop: Arc<AtomicBool>,
    on_flatline: impl FnOnce(),
) {
    let sockets = (|| -> zmq::Result<_> {
        let ping = new_socket(
            &ctx,
            SocketType::SUB,
            &SocketSpec {
                identity: None,
                subscribe_all: true,
            },
        )?;
        ping.set_linger(0)?;
        ping.connect(&ep.hb_ping)?;
        let pong = new_socket(
            &ctx,
            SocketType::DEALER,
            &SocketSpec {
                identity: Some(uuid.as_bytes()),
                subscribe_all: false,
            },
        )?;
        pong.set_linger(0)?;
        pong.connect(&ep.hb_pong)?;
        Ok((ping, pong))
    })();
    let (ping, pong) = match sockets {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("heart sockets failed: {e}");
            return on_flatline();
        }
    };
    let check = hb_period + Duration::from_millis(500);
    let mut next_check = Instant::now() + check;
    let mut seen = false;
    let mut misses = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // short polls so that `stop` is noticed quickly
        match ping.poll(zmq::POLLIN, 100) {
            Ok(n) if n > 0 => {
                while let Ok(frames) = recv_frames(&ping, true) {
                    seen = true;
                    if let Err(e) = send_frames(&pong, frames) {
                        tracing::warn!("heartbeat echo failed: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("heartbeat poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if Instant::now() >= next_check {
            next_check += check;
            if seen {
                misses = 0;
            } else {
                misses += 1;
                tracing::debug!("no heartbeat for {misses} checks");
            }
            seen = false;
            if misses > max_misses {
                tracing::error!("no heartbeat for {misses} periods: the controller is gone");
                return on_flatline();
            }
        }
    }
}
