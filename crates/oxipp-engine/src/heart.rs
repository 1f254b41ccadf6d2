//! The heart: echoes every ping and watches for the controller going away.
//!
//! It runs in its own thread and touches nothing but its two sockets and an atomic flag, so a
//! task holding the GIL for minutes never makes the engine look dead (a stock engine's heart is
//! a zmq device thread for the same reason).
//! Its sockets are [`oxipp_zmtp`] ones, driven by this thread alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxipp_zmtp::{Options, Socket, SocketType};

use crate::conn::Endpoints;

/// Runs the heart until `stop` is set. Calls `on_flatline` once (and returns) when more than
/// `max_misses` check periods of `hb_period + 500 ms` (stock's watchdog interval) pass without
/// a ping. Its sockets ([`oxipp_zmtp`]: a SUB for pings, a DEALER with the engine's identity
/// for pongs) are driven by this thread alone.
pub fn run(
    ep: Endpoints,
    uuid: String,
    hb_period: Duration,
    max_misses: u32,
    stop: Arc<AtomicBool>,
    on_flatline: impl FnOnce(),
) {
    let sockets = (|| -> std::io::Result<_> {
        let mut ping = Socket::new(SocketType::Sub, Options::default())?;
        ping.subscribe(b"");
        ping.connect(&ep.hb_ping)?;
        let mut pong = Socket::new(SocketType::Dealer, crate::runtime::socket_options(&uuid))?;
        pong.connect(&ep.hb_pong)?;
        Ok((ping, pong))
    })();
    let (mut ping, mut pong) = match sockets {
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
        // short polls so that `stop` is noticed quickly; the sockets' due timers (reconnects)
        // bound the wait too, and each pass reads both sockets whether ready or not
        if let Err(e) = oxipp_zmtp::poll(&[&ping, &pong], Some(Duration::from_millis(100))) {
            tracing::warn!("heartbeat poll failed: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
        while let Some(frames) = ping.recv() {
            seen = true;
            // a pong sent while the controller's pong socket is not connected waits for it
            if let Err(e) = pong.send(frames) {
                tracing::warn!("heartbeat echo failed: {e}");
            }
        }
        while pong.recv().is_some() {}
        for s in [&mut ping, &mut pong] {
            while let Some(e) = s.event() {
                tracing::debug!("heart: {e:?}");
            }
        }
        pong.flush();
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
