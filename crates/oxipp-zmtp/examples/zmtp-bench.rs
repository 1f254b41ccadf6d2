//! libzmq vs oxipp-zmtp, side by side, between two processes (this binary spawns itself as
//! the peer). A measurement, not a test: nothing here fails on a slow result.
//!
//! ```sh
//! cargo build --release -p oxipp-zmtp --example zmtp-bench
//! target/release/examples/zmtp-bench [--rtt 20000] [--msgs 1000000]
//! ```
//!
//! * latency: the parent's ROUTER echoes every message of the child's DEALER; the child
//!   times each round trip of a small 3-frame message (median, p99).
//! * throughput: the child's DEALER sends `--msgs` small 2-frame messages back to back
//!   (pipelined); the parent's ROUTER receives them all; rate over the whole transfer.
//! * CPU: user+system time of both processes (`getrusage`, all threads, so libzmq's IO
//!   threads count) per message.

use std::env;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_zmtp::{poll, Options, Socket, SocketType};

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Libzmq,
    Zmtp,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Libzmq => "libzmq",
            Impl::Zmtp => "zmtp",
        }
    }
    fn parse(s: &str) -> Impl {
        if s == "libzmq" {
            Impl::Libzmq
        } else {
            Impl::Zmtp
        }
    }
}

/// CPU seconds (user + system) of this process or of its waited-for children.
#[allow(unsafe_code)]
fn cpu_seconds(children: bool) -> f64 {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage only writes the struct we pass; a zeroed rusage is a valid value.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

const HEAD: &[u8] = b"ping";
const BODY: [u8; 64] = [7; 64];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            &args[2],
            Impl::parse(&args[3]),
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
        );
        return;
    }
    let rtts = arg("--rtt", 20_000);
    let msgs = arg("--msgs", 1_000_000);
    let mut rows: Vec<(String, f64, f64, bool)> = Vec::new(); // (metric, libzmq, zmtp, lower is better)
    let mut lat = Vec::new();
    let mut thr = Vec::new();
    for imp in [Impl::Libzmq, Impl::Zmtp] {
        eprintln!(
            "latency, {} on both ends, {rtts} round trips ...",
            imp.name()
        );
        lat.push(run(imp, "latency", rtts));
        eprintln!(
            "throughput, {} on both ends, {msgs} messages ...",
            imp.name()
        );
        thr.push(run(imp, "throughput", msgs));
    }
    rows.push((
        "round trip, median (µs)".into(),
        lat[0].median_us,
        lat[1].median_us,
        true,
    ));
    rows.push((
        "round trip, p99 (µs)".into(),
        lat[0].p99_us,
        lat[1].p99_us,
        true,
    ));
    rows.push((
        "CPU per round trip, both processes (µs)".into(),
        lat[0].cpu_per_msg_us(),
        lat[1].cpu_per_msg_us(),
        true,
    ));
    rows.push((
        "throughput, one way (msgs/s)".into(),
        thr[0].rate,
        thr[1].rate,
        false,
    ));
    rows.push((
        "CPU per message one way, both processes (µs)".into(),
        thr[0].cpu_per_msg_us(),
        thr[1].cpu_per_msg_us(),
        true,
    ));
    rows.push((
        "  of which receiver (µs)".into(),
        thr[0].parent_cpu / thr[0].n as f64 * 1e6,
        thr[1].parent_cpu / thr[1].n as f64 * 1e6,
        true,
    ));
    rows.push((
        "  of which sender (µs)".into(),
        thr[0].child_cpu / thr[0].n as f64 * 1e6,
        thr[1].child_cpu / thr[1].n as f64 * 1e6,
        true,
    ));
    println!("| metric | libzmq | oxipp-zmtp | zmtp vs libzmq (> 1: zmtp better) |");
    println!("|---|---|---|---|");
    for (m, a, b, lower) in rows {
        let ratio = if lower { a / b } else { b / a };
        println!("| {m} | {} | {} | {ratio:.2}× |", num(a), num(b));
    }
    println!(
        "\n{rtts} round trips of [\"ping\", 64 B, 8 B]; {msgs} one-way messages of [\"ping\", 64 B]; ROUTER (parent) <-> DEALER (child)."
    );
}

/// Three significant digits or so, with thousands separators for rates.
fn num(x: f64) -> String {
    if x >= 10_000.0 {
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

struct Result {
    n: u64,
    median_us: f64,
    p99_us: f64,
    rate: f64,
    parent_cpu: f64,
    child_cpu: f64,
}

impl Result {
    fn cpu_per_msg_us(&self) -> f64 {
        (self.parent_cpu + self.child_cpu) / self.n as f64 * 1e6
    }
}

/// Parent side of one run: bind, spawn the child, serve, collect.
fn run(imp: Impl, mode: &str, n: u64) -> Result {
    let cpu0 = cpu_seconds(false);
    let child_cpu0 = cpu_seconds(true);
    let (port, mut server) = Server::bind(imp);
    let child = Command::new(env::current_exe().unwrap())
        .args([
            "--child",
            mode,
            imp.name(),
            &port.to_string(),
            &n.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the peer");
    let (first, last) = match mode {
        "latency" => {
            server.echo(n);
            (Instant::now(), Instant::now())
        }
        _ => server.sink(n),
    };
    drop(server);
    let out = child.wait_with_output().expect("peer output");
    let child_cpu = cpu_seconds(true) - child_cpu0;
    let parent_cpu = cpu_seconds(false) - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN)
    };
    Result {
        n,
        median_us: field("median_us="),
        p99_us: field("p99_us="),
        rate: n as f64 / (last - first).as_secs_f64(),
        parent_cpu,
        child_cpu,
    }
}

/// The parent's ROUTER, either implementation.
#[allow(clippy::large_enum_variant)] // one per run
enum Server {
    Libzmq(zmq::Socket),
    Zmtp(Socket),
}

impl Server {
    fn bind(imp: Impl) -> (u16, Server) {
        match imp {
            Impl::Libzmq => {
                let ctx = zmq::Context::new();
                let s = ctx.socket(zmq::ROUTER).unwrap();
                s.set_sndhwm(0).unwrap();
                s.set_rcvhwm(0).unwrap();
                s.set_router_mandatory(true).unwrap();
                s.bind("tcp://127.0.0.1:*").unwrap();
                let ep = s.get_last_endpoint().unwrap().unwrap();
                let port = ep.rsplit(':').next().unwrap().parse().unwrap();
                (port, Server::Libzmq(s))
            }
            Impl::Zmtp => {
                let mut s = Socket::new(SocketType::Router, Options::default()).unwrap();
                let port = s.bind("tcp://127.0.0.1:0").unwrap();
                (port, Server::Zmtp(s))
            }
        }
    }

    /// Echoes `n` messages.
    fn echo(&mut self, n: u64) {
        let mut done = 0;
        match self {
            Server::Libzmq(s) => {
                while done < n {
                    let m = s.recv_multipart(0).unwrap();
                    s.send_multipart(m, 0).unwrap();
                    done += 1;
                }
            }
            Server::Zmtp(s) => {
                while done < n {
                    while let Some(m) = s.recv() {
                        s.send(m).unwrap();
                        done += 1;
                    }
                    s.flush();
                    if done < n {
                        poll(&[s], None).unwrap();
                    }
                }
            }
        }
    }

    /// Receives `n` messages, then acknowledges; returns the first and last arrival times.
    fn sink(&mut self, n: u64) -> (Instant, Instant) {
        let mut first = None;
        let mut done = 0;
        match self {
            Server::Libzmq(s) => {
                let mut m = Vec::new();
                while done < n {
                    m = s.recv_multipart(0).unwrap();
                    first.get_or_insert_with(Instant::now);
                    done += 1;
                }
                let last = Instant::now();
                s.send_multipart([&m[0][..], b"done"], 0).unwrap();
                (first.unwrap(), last)
            }
            Server::Zmtp(s) => {
                let mut id = Bytes::new();
                while done < n {
                    while let Some(m) = s.recv() {
                        first.get_or_insert_with(Instant::now);
                        id = m[0].clone();
                        done += 1;
                    }
                    if done < n {
                        poll(&[s], None).unwrap();
                    }
                }
                let last = Instant::now();
                s.send(vec![id, Bytes::from_static(b"done")]).unwrap();
                while s.queued_bytes() > 0 {
                    s.flush();
                    s.handle_io();
                }
                (first.unwrap(), last)
            }
        }
    }
}

/// The child's DEALER: drives the round trips or the one-way stream, prints results.
fn child(mode: &str, imp: Impl, port: u16, n: u64) {
    let ep = format!("tcp://127.0.0.1:{port}");
    let mut rtts: Vec<Duration> = Vec::with_capacity(n as usize);
    match imp {
        Impl::Libzmq => {
            let ctx = zmq::Context::new();
            let d = ctx.socket(zmq::DEALER).unwrap();
            d.set_sndhwm(0).unwrap();
            d.set_rcvhwm(0).unwrap();
            d.set_linger(5000).unwrap();
            d.connect(&ep).unwrap();
            if mode == "latency" {
                for i in 0..n {
                    let t = Instant::now();
                    d.send_multipart([HEAD, &BODY[..], &i.to_be_bytes()], 0)
                        .unwrap();
                    let m = d.recv_multipart(0).unwrap();
                    rtts.push(t.elapsed());
                    assert_eq!(m[2], i.to_be_bytes());
                }
            } else {
                for _ in 0..n {
                    d.send_multipart([HEAD, &BODY[..]], 0).unwrap();
                }
                d.recv_multipart(0).unwrap(); // "done"
            }
        }
        Impl::Zmtp => {
            let mut d = Socket::new(SocketType::Dealer, Options::default()).unwrap();
            d.connect(&ep).unwrap();
            while d.event().is_none() {
                d.handle_io();
                poll(&[&d], Some(Duration::from_millis(10))).unwrap();
            }
            let head = Bytes::from_static(HEAD);
            let body = Bytes::from_static(&BODY);
            if mode == "latency" {
                for i in 0..n {
                    let t = Instant::now();
                    d.send(vec![
                        head.clone(),
                        body.clone(),
                        Bytes::copy_from_slice(&i.to_be_bytes()),
                    ])
                    .unwrap();
                    d.flush();
                    let m = loop {
                        if let Some(m) = d.recv() {
                            break m;
                        }
                        d.flush(); // the first message waits for the handshake
                        poll(&[&d], None).unwrap();
                    };
                    rtts.push(t.elapsed());
                    assert_eq!(m[2][..], i.to_be_bytes());
                }
            } else {
                // Pipelined: queue a batch, write what the kernel takes, keep going; the
                // write queue is bounded by waiting for writability past 4 MiB.
                let mut sent = 0;
                while sent < n {
                    let batch = (n - sent).min(256);
                    for _ in 0..batch {
                        d.send(vec![head.clone(), body.clone()]).unwrap();
                    }
                    sent += batch;
                    d.flush();
                    while d.queued_bytes() > 4 << 20 {
                        poll(&[&d], Some(Duration::from_millis(10))).unwrap();
                        d.handle_io();
                        d.flush();
                    }
                }
                loop {
                    d.flush();
                    if d.recv().is_some() {
                        break; // "done"
                    }
                    poll(&[&d], Some(Duration::from_millis(10))).unwrap();
                }
            }
        }
    }
    if mode == "latency" {
        rtts.sort_unstable();
        let q = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        println!("median_us={} p99_us={}", q(0.5), q(0.99));
    }
}
