//! A listener in a process that has run out of file descriptors (its own test binary: the
//! test uses up this process's descriptors, which would break tests running beside it).
//!
//! The connection waits in the kernel's accept queue; the listener must neither spin (a
//! level-triggered poll would report it ready on every pass while each accept fails) nor lose
//! the connection: once descriptors are free again it is accepted and its message arrives.

mod common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::*;
use oxipp_zmtp::{poll, Event, SocketType, ACCEPT_RETRY};

#[test]
fn a_listener_out_of_descriptors_pauses_and_accepts_once_they_are_free() {
    let mut router = ours(SocketType::Router, b"r");
    let port = router.bind("tcp://127.0.0.1:0").unwrap();
    let mut dealer = ours(SocketType::Dealer, b"d");
    dealer.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    dealer.send(vec![b(b"hello")]).unwrap();
    dealer.flush();
    // the kernel completes the TCP handshake into the accept queue; give it a moment
    std::thread::sleep(Duration::from_millis(50));

    let mut hoard = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hoard.push(f);
    }
    assert!(!hoard.is_empty());
    let event = event_within(&mut router, Duration::from_secs(5));
    assert!(
        matches!(event, Some(Event::AcceptFailed { .. })),
        "expected AcceptFailed, got {event:?}"
    );
    assert!(router.stats().accept_failed >= 1);
    assert_eq!(router.stats().accepted, 0);
    // paused: the listener no longer makes the socket readable, and the socket's timer
    // says when it tries again
    let retry = router.timeout().expect("a retry timer");
    assert!(retry <= ACCEPT_RETRY);
    let t = Instant::now();
    let ready = poll(&[&router], Some(ACCEPT_RETRY / 2)).unwrap();
    assert_eq!(ready, 0, "a paused listener must not wake its owner");
    assert!(t.elapsed() >= ACCEPT_RETRY / 4);

    drop(hoard);
    let end = Instant::now() + T;
    let m = loop {
        dealer.handle_io();
        dealer.flush();
        if let Some(m) = recv_within(&mut router, Duration::from_millis(50)) {
            break m;
        }
        assert!(
            Instant::now() < end,
            "the queued connection was never accepted"
        );
    };
    assert_eq!(as_vecs(&m), vec![b"d".to_vec(), b"hello".to_vec()]);
    assert_eq!(router.stats().accepted, 1);
}
