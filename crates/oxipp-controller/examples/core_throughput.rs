//! In-process throughput of the controller core alone (no sockets): load-balanced tasks
//! submitted by a fake client and answered by fake engines through a recording outbox.
//! `cargo run --release -p oxipp-controller --example core_throughput -- [TASKS] [ENGINES] [--nodb]`

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use oxipp_controller::config::Config;
use oxipp_controller::core::{Controller, EngineConnInfo};
use oxipp_controller::outbox::{RecordingOutbox, Sock};
use oxipp_taskdb::{MemoryStore, NoDb, TaskStore};
use oxipp_wire::{Message, Session, Signer};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let engines: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let nodb = args.iter().any(|a| a == "--nodb");
    let signer = Signer::new(b"key", "hmac-sha256").unwrap();
    let db: Box<dyn TaskStore> = if nodb {
        Box::new(NoDb)
    } else {
        Box::new(MemoryStore::default())
    };
    let cfg = Config::from_args(&["--profile-dir=/tmp/oxipp-core-bench".to_string()]).unwrap();
    let t0 = Instant::now();
    let mut core = Controller::new(
        cfg,
        EngineConnInfo(json!({})),
        signer.clone(),
        db,
        2,
        None,
        t0,
    )
    .unwrap();
    let mut out = RecordingOutbox::default();
    let engine_sessions: Vec<Session> = (0..engines)
        .map(|_| Session::with_random_id(signer.clone()))
        .collect();
    for s in &engine_sessions {
        let m = s.build(
            vec![Bytes::from(s.id.clone())],
            "registration_request",
            None,
            &json!({}),
            &json!({"uuid": s.id}),
            vec![],
        );
        core.handle(Sock::Query, m.into_frames(), t0, &mut out);
    }
    core.tick(t0, &mut out);
    for (sock, frames) in out.take() {
        if sock == Sock::HbPing {
            for s in &engine_sessions {
                core.handle(
                    Sock::HbPong,
                    vec![Bytes::from(s.id.clone()), frames[0].clone()],
                    t0,
                    &mut out,
                );
            }
        }
    }
    out.take();
    let client = Session::with_random_id(signer.clone());
    let md = json!({"after": [], "follow": [], "timeout": 0.0, "targets": [], "retries": 0, "label": null});
    let by_uuid: std::collections::HashMap<String, &Session> =
        engine_sessions.iter().map(|s| (s.id.clone(), s)).collect();
    let start = Instant::now();
    let window = 1000;
    let mut sent = 0;
    let mut done = 0;
    let mut in_core = std::time::Duration::ZERO;
    while done < tasks {
        while sent < tasks && sent - done < window {
            let m = client.build(
                vec![Bytes::from_static(b"client")],
                "apply_request",
                None,
                &md,
                &json!({}),
                vec![Bytes::from_static(b"f"), Bytes::from_static(b"i")],
            );
            let frames = m.into_frames();
            let t = Instant::now();
            core.handle(Sock::TaskClient, frames, t, &mut out);
            in_core += t.elapsed();
            sent += 1;
        }
        for (sock, frames) in out.take() {
            match sock {
                Sock::TaskEngine => {
                    let req = Message::parse(frames).unwrap();
                    let uuid = String::from_utf8(req.idents[0].to_vec()).unwrap();
                    let s = by_uuid[&uuid];
                    let rmd = json!({"started": "2026-01-01T00:00:00.000000Z", "dependencies_met": true, "engine": uuid, "status": "ok", "is_broadcast": false, "is_coalescing": false, "original_msg_id": ""});
                    let r = s.build(
                        vec![req.idents[0].clone(), req.idents[1].clone()],
                        "apply_reply",
                        Some(&req.header),
                        &rmd,
                        &json!({"status": "ok"}),
                        vec![Bytes::from_static(b"\x80\x04N.")],
                    );
                    let frames = r.into_frames();
                    let t = Instant::now();
                    core.handle(Sock::TaskEngine, frames, t, &mut out);
                    in_core += t.elapsed();
                }
                Sock::TaskClient => done += 1,
                _ => {}
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "core alone: {:.2} us/task = {:.0} tasks/s",
        in_core.as_secs_f64() * 1e6 / tasks as f64,
        tasks as f64 / in_core.as_secs_f64()
    );
    println!("{tasks} tasks through the core ({engines} engines, db={}): {:.0} tasks/s, {:.2} us/task (includes fake peers' message building)",
        if nodb { "none" } else { "memory" }, tasks as f64 / el, el * 1e6 / tasks as f64);
}
