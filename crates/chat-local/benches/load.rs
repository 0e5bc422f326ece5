//! Load benchmark: 1,000 concurrent WebSocket clients in 250 sessions (4 per session), each
//! sending one message per second, against the real `chat-local` (release build) with its
//! SQLite store on disk and the built-in dev bot answering every message.
//!
//! Measured on the receiving side: every user message and every dev-bot reply must reach all
//! 4 connections of its session (anything missing after a bounded drain is reported), the
//! latency from send to receipt per connection, frames and `message` events pushed per
//! second, and the server's peak RSS and CPU (sampled from `/proc/<pid>`).
//!
//! `cargo bench -p chat-local --bench load` (60 s), `-- 10` for a 10 s run, `-- 60 --tmpfs`
//! to put the server's data folder on `/dev/shm` (isolates the cost of fsync), and
//! `--interval-ms=2000` to offer less than one message per second per client (finds the rate
//! the server sustains). Server and clients share the machine: the figures are indicative.

use chat_testkit::bench as bench_report;
#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SESSIONS: usize = 250;
const PER_SESSION: usize = 4;
const CLIENTS: usize = SESSIONS * PER_SESSION;
/// How long deliveries may still arrive after the last send.
const DRAIN: Duration = Duration::from_secs(30);
/// A send more than this late against its schedule counts as late (client-side pressure).
const LATE: Duration = Duration::from_millis(100);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn main() {
    let mut secs = 60usize;
    let mut tmpfs = false;
    let mut interval = Duration::from_secs(1);
    for a in std::env::args().skip(1) {
        if a == "--tmpfs" {
            tmpfs = true;
        } else if let Some(ms) = a.strip_prefix("--interval-ms=") {
            interval = Duration::from_millis(ms.parse::<u64>().expect("--interval-ms=<ms>").max(1));
        } else if let Ok(n) = a.parse::<usize>() {
            secs = n.max(1);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(secs, interval, tmpfs));
}

/// Counters shared by every client task; per-message state is one atomic per message.
struct Shared {
    start: Instant,
    /// Messages each client sends.
    per_client: usize,
    /// Time between two sends of one client.
    interval: Duration,
    /// Send time of message `idx` in ns since `start`, plus one (0: not sent).
    sent_at: Vec<AtomicU64>,
    /// Bit `slot` set when connection `slot` of the session received the user message.
    user_seen: Vec<AtomicU8>,
    /// The same for the dev bot's reply to it.
    reply_seen: Vec<AtomicU8>,
    /// `message` events received per second since `start`.
    per_second: Vec<AtomicU64>,
    sent: AtomicU64,
    late_sends: AtomicU64,
    send_failed: AtomicU64,
    frames: AtomicU64,
    user_recv: AtomicU64,
    reply_recv: AtomicU64,
    acks: AtomicU64,
    statuses: AtomicU64,
    typing: AtomicU64,
    errors: AtomicU64,
    other: AtomicU64,
    duplicates: AtomicU64,
    foreign: AtomicU64,
    closed_early: AtomicU64,
    last_receipt_ns: AtomicU64,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<Msg<'a>>,
    #[serde(default, borrow, rename = "clientMessageId")]
    client_message_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

/// Latency samples (µs) one connection collected.
#[derive(Default)]
struct Samples {
    user: Vec<u32>,
    reply: Vec<u32>,
    ack: Vec<u32>,
}

async fn run(secs: usize, interval: Duration, tmpfs: bool) {
    check_fd_limit();
    let env = [
        ("CHAT_RATE_MESSAGES_PER_MINUTE", "100000000"),
        ("CHAT_RATE_WEBHOOKS_PER_MINUTE", "100000000"),
        ("CHAT_RATE_SESSIONS_PER_5MIN", "100000000"),
        ("RUST_LOG", "warn"),
    ];
    let dir = if tmpfs {
        tempfile::tempdir_in("/dev/shm").expect("temp dir on /dev/shm")
    } else {
        tempfile::tempdir().expect("temp dir")
    };
    let server = Server::start_in(dir.path(), &env).await;
    let pid = server_pid().expect("the chat-local child process is visible in /proc");
    let hz = clock_ticks();

    let mut sockets = connect_all(&server).await;
    let rss_connected = read_status(pid, "VmRSS:").unwrap_or(0);

    let per_client = ((secs as u128 * 1000) / interval.as_millis()).max(1) as usize;
    let total = CLIENTS * per_client;
    let shared = Arc::new(Shared::new(secs, per_client, interval));
    let (stop_tx, stop_rx) = watch::channel(false);

    let sampler = spawn_sampler(pid, stop_rx.clone());

    let mut readers = Vec::with_capacity(CLIENTS);
    let mut sinks = Vec::with_capacity(CLIENTS);
    for (conn, socket) in sockets.iter_mut().enumerate() {
        let (sink, stream) = socket.take().unwrap().split();
        sinks.push(sink);
        readers.push(tokio::spawn(reader(
            conn,
            stream,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every client sends once a second, the 1,000 of them spread evenly over the second
    // (a session's 4 clients a quarter second apart).
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let t0_ns = shared.ns() + 200_000_000;
    let senders: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(conn, sink)| tokio::spawn(sender(conn, sink, shared.clone(), t0)))
        .collect();
    let mut sinks = Vec::with_capacity(CLIENTS);
    for s in senders {
        sinks.push(s.await.unwrap());
    }
    let send_end = Instant::now();
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * PER_SESSION as u64;
    while send_end.elapsed() < DRAIN
        && (shared.user_recv.load(Ordering::Relaxed) < expected
            || shared.reply_recv.load(Ordering::Relaxed) < expected)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_in = send_end.elapsed();
    stop_tx.send(true).unwrap();
    let mut samples = Samples::default();
    for r in readers {
        let s = r.await.unwrap();
        samples.user.extend(s.user);
        samples.reply.extend(s.reply);
        samples.ack.extend(s.ack);
    }
    let resources = sampler.await.unwrap();
    let stored = store_summary(dir.path());
    let hwm = read_status(pid, "VmHWM:").unwrap_or(0);
    let rss_end = read_status(pid, "VmRSS:").unwrap_or(0);
    drop(sinks);

    let Losses {
        user_missing,
        reply_missing,
        user_none,
        reply_none,
        examples,
    } = losses(&shared, total, per_client);

    // Rates over the load window: first send to last receipt.
    let last_ns = shared.last_receipt_ns.load(Ordering::Relaxed);
    let window = Duration::from_nanos(last_ns.saturating_sub(t0_ns)).max(Duration::from_millis(1));
    let message_events =
        shared.user_recv.load(Ordering::Relaxed) + shared.reply_recv.load(Ordering::Relaxed);
    let frames = shared.frames.load(Ordering::Relaxed);
    let first_sec = (t0_ns / 1_000_000_000) as usize;
    let steady: Vec<u64> = shared
        .per_second
        .iter()
        .skip(first_sec + 1)
        .take(secs.saturating_sub(2))
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let peak_sec = steady.iter().copied().max().unwrap_or(0);

    let (cpu_avg, cpu_peak, client_avg) = cpu(&resources, hz);
    let rss_peak_sampled = resources.iter().map(|r| r.3).max().unwrap_or(0);
    let threads_peak = resources.iter().map(|r| r.4).max().unwrap_or(0);

    let log = server.log();
    let warn_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let warn_lines: Vec<String> = warn_lines.iter().map(|l| strip_ansi(l)).collect();
    let too_slow = log.matches("too slow").count();

    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let section = format!(
        "chat-local under load ({CLIENTS} WebSocket clients, {SESSIONS} sessions, {} msg/s for {secs} s{})",
        CLIENTS as u128 * 1000 / interval.as_millis(),
        if tmpfs { ", tmpfs" } else { "" }
    );
    let quant = |v: &mut Vec<u32>, q: f64| {
        let mut ms: Vec<f64> = v.iter().map(|&us| us as f64 / 1000.0).collect();
        if ms.is_empty() {
            f64::NAN
        } else {
            bench_report::quantile(&mut ms, q)
        }
    };
    bench_report::report(
        &section,
        "deliveries missing (user messages / replies)",
        (user_missing + reply_missing) as f64,
        None,
        "",
        &format!("{user_missing} / {reply_missing} of {expected} each"),
    );
    for (item, v) in [
        ("user message delivery, per connection", &mut samples.user),
        ("dev-bot reply delivery, per connection", &mut samples.reply),
    ] {
        let (p50, p99) = (quant(v, 0.5), quant(v, 0.99));
        bench_report::report(&section, item, p50, Some(p99), "ms", "");
    }
    bench_report::report(
        &section,
        "message events pushed per second (mean)",
        message_events as f64 / window.as_secs_f64(),
        None,
        "/s",
        &format!("peak {peak_sec}/s"),
    );
    bench_report::report(
        &section,
        "server peak RSS",
        (hwm.max(rss_peak_sampled) / 1024) as f64,
        None,
        "MiB",
        "",
    );
    bench_report::report(
        &section,
        "server CPU (mean, 100% = 1 core)",
        cpu_avg,
        None,
        "%",
        &format!("peak {cpu_peak:.0}%"),
    );
    println!();
    println!(
        "chat-local under load: {CLIENTS} WebSocket clients in {SESSIONS} sessions ({PER_SESSION} each), \
         1 message every {} ms per client for {secs} s ({} messages/s offered), data folder on {}",
        interval.as_millis(),
        CLIENTS as u128 * 1000 / interval.as_millis(),
        if tmpfs { "/dev/shm (tmpfs)" } else { "disk" }
    );
    println!("+--------------------------------------------+------------------------------+");
    let row = |k: &str, v: String| println!("| {k:<42} | {v:<28} |");
    row("user messages sent", format!("{sent}"));
    row(
        "  sends late >100 ms / failed",
        format!("{} / {}", n(&shared.late_sends), n(&shared.send_failed)),
    );
    row(
        "user message events expected / received",
        format!("{expected} / {}", n(&shared.user_recv)),
    );
    row(
        "dev-bot reply events expected / received",
        format!("{expected} / {}", n(&shared.reply_recv)),
    );
    row(
        "MISSING user / reply deliveries",
        format!("{user_missing} / {reply_missing}"),
    );
    row(
        "  messages seen by no connection (u / r)",
        format!("{user_none} / {reply_none}"),
    );
    row(
        "duplicates / foreign / error frames",
        format!(
            "{} / {} / {}",
            n(&shared.duplicates),
            n(&shared.foreign),
            n(&shared.errors)
        ),
    );
    row(
        "sockets closed by the server",
        format!("{}", n(&shared.closed_early)),
    );
    row(
        "drain after last send",
        format!(
            "{:.2} s (limit {} s)",
            drained_in.as_secs_f64(),
            DRAIN.as_secs()
        ),
    );
    row("ack latency (sender)", pcts(&mut samples.ack));
    row(
        "user message delivery, per connection",
        pcts(&mut samples.user),
    );
    row(
        "dev-bot reply delivery, per connection",
        pcts(&mut samples.reply),
    );
    row(
        "message events pushed/s (mean / peak 1 s)",
        format!(
            "{:.0} / {peak_sec}",
            message_events as f64 / window.as_secs_f64()
        ),
    );
    row(
        "all frames pushed/s (mean)",
        format!(
            "{:.0} ({frames} frames)",
            frames as f64 / window.as_secs_f64()
        ),
    );
    row(
        "  frames: ack / status / typing / other",
        format!(
            "{} / {} / {} / {}",
            n(&shared.acks),
            n(&shared.statuses),
            n(&shared.typing),
            n(&shared.other)
        ),
    );
    row(
        "server CPU (mean / peak 1 s, 100% = 1 core)",
        format!("{cpu_avg:.0}% / {cpu_peak:.0}%"),
    );
    row(
        "server RSS (connected / peak / end)",
        format!(
            "{} / {} / {} MiB",
            rss_connected / 1024,
            hwm.max(rss_peak_sampled) / 1024,
            rss_end / 1024
        ),
    );
    row("server threads (peak)", format!("{threads_peak}"));
    row("bench client CPU (mean)", format!("{client_avg:.0}%"));
    row(
        "server log WARN/ERROR lines (too slow)",
        format!("{} ({too_slow})", warn_lines.len()),
    );
    println!("+--------------------------------------------+------------------------------+");
    println!("latency: p50 / p99 / max; from the client's send of `sendMessage` to receipt");
    println!("server store at the end of the drain (read-only look at chat.db): {stored}");
    if !examples.is_empty() {
        println!("missing, first examples:");
        for e in &examples {
            println!("  {e}");
        }
    }
    let errs = shared.error_samples.lock().unwrap();
    if !errs.is_empty() {
        println!("error frames, first examples:");
        for e in errs.iter() {
            println!("  {e}");
        }
    }
    if !warn_lines.is_empty() {
        println!("server log, first WARN/ERROR lines:");
        for l in warn_lines.iter().take(5) {
            println!("  {l}");
        }
    }
    drop(server);
}

/// 250 sessions, then 4 sockets each, every session's from an address of its own.
async fn connect_all(server: &Server) -> Vec<Option<Socket>> {
    // 250 sessions, then 4 sockets each.
    let mut sessions = Vec::with_capacity(SESSIONS);
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(25) {
        let made =
            futures_util::future::join_all(chunk.iter().map(|_| server.create_session())).await;
        sessions.extend(made);
    }
    // Each session's sockets come from an address of their own (127.0.1.1, 127.0.1.2, ...),
    // as browsers do, so the server's default caps per address hold.
    let mut sockets: Vec<Option<Socket>> = Vec::with_capacity(CLIENTS);
    let clients: Vec<(String, String)> = (0..CLIENTS)
        .map(|c| {
            let n = c / PER_SESSION;
            let s = &sessions[n];
            let url = format!("{}?sessionId={}&token={}", server.ws_url, s.id, s.token);
            (url, format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250))
        })
        .collect();
    let to = server.addr();
    for chunk in clients.chunks(50) {
        let opened = futures_util::future::join_all(chunk.iter().map(|(u, from)| async move {
            let tcp = common::tcp_from(from, to, None).await;
            let (ws, _) = tokio::time::timeout(
                common::WAIT,
                tokio_tungstenite::client_async(u.as_str(), MaybeTlsStream::Plain(tcp)),
            )
            .await
            .expect("WebSocket connects in time")
            .expect("WebSocket connects");
            ws
        }))
        .await;
        sockets.extend(opened.into_iter().map(Some));
    }
    sockets
}

impl Shared {
    fn new(secs: usize, per_client: usize, interval: Duration) -> Self {
        let total = CLIENTS * per_client;
        Shared {
            start: Instant::now(),
            per_client,
            interval,
            sent_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
            user_seen: (0..total).map(|_| AtomicU8::new(0)).collect(),
            reply_seen: (0..total).map(|_| AtomicU8::new(0)).collect(),
            per_second: (0..secs + DRAIN.as_secs() as usize + 10)
                .map(|_| AtomicU64::new(0))
                .collect(),
            sent: AtomicU64::new(0),
            late_sends: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            user_recv: AtomicU64::new(0),
            reply_recv: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
            typing: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            other: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            last_receipt_ns: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
        }
    }
}

/// Once a second until stopped: (when, server CPU ticks, own CPU ticks, server RSS, threads).
type Sample = (Instant, u64, u64, u64, u64);

fn spawn_sampler(
    pid: u32,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            samples.push((
                Instant::now(),
                cpu_ticks(&pid.to_string()).unwrap_or(0),
                cpu_ticks("self").unwrap_or(0),
                read_status(pid, "VmRSS:").unwrap_or(0),
                read_status(pid, "Threads:").unwrap_or(0),
            ));
        }
        samples
    })
}

/// Per message, how many of the 4 connections never saw it.
struct Losses {
    user_missing: u64,
    reply_missing: u64,
    user_none: u64,
    reply_none: u64,
    examples: Vec<String>,
}

fn losses(shared: &Shared, total: usize, per_client: usize) -> Losses {
    let mut user_missing = 0u64;
    let mut reply_missing = 0u64;
    let mut user_none = 0u64;
    let mut reply_none = 0u64;
    let mut examples = Vec::new();
    for idx in 0..total {
        if shared.sent_at[idx].load(Ordering::Relaxed) == 0 {
            continue;
        }
        let u = shared.user_seen[idx].load(Ordering::Relaxed).count_ones() as u64;
        let r = shared.reply_seen[idx].load(Ordering::Relaxed).count_ones() as u64;
        user_missing += PER_SESSION as u64 - u;
        reply_missing += PER_SESSION as u64 - r;
        user_none += u64::from(u == 0);
        reply_none += u64::from(r == 0);
        if (u < PER_SESSION as u64 || r < PER_SESSION as u64) && examples.len() < 5 {
            examples.push(format!(
                "c{idx} (session {}, from connection {}): user on {u}/4, reply on {r}/4",
                idx / per_client / PER_SESSION,
                idx / per_client % PER_SESSION
            ));
        }
    }

    Losses {
        user_missing,
        reply_missing,
        user_none,
        reply_none,
        examples,
    }
}

/// The server's mean and peak (busiest second) CPU and this process's mean, in % of a core.
fn cpu(resources: &[Sample], hz: f64) -> (f64, f64, f64) {
    let (mut cpu_avg, mut cpu_peak, mut client_avg) = (0.0, 0.0f64, 0.0);
    if resources.len() >= 2 {
        let (a, b) = (&resources[0], &resources[resources.len() - 1]);
        let dt = (b.0 - a.0).as_secs_f64();
        cpu_avg = (b.1 - a.1) as f64 / hz / dt * 100.0;
        client_avg = (b.2 - a.2) as f64 / hz / dt * 100.0;
        for w in resources.windows(2) {
            let dt = (w[1].0 - w[0].0).as_secs_f64();
            cpu_peak = cpu_peak.max((w[1].1 - w[0].1) as f64 / hz / dt * 100.0);
        }
    }
    (cpu_avg, cpu_peak, client_avg)
}

async fn sender(
    conn: usize,
    mut sink: SplitSink<Socket, WsMessage>,
    sh: Arc<Shared>,
    t0: tokio::time::Instant,
) -> SplitSink<Socket, WsMessage> {
    let (session, slot) = (conn / PER_SESSION, conn % PER_SESSION);
    let offset = Duration::from_micros(((slot * SESSIONS + session) * 1_000_000 / CLIENTS) as u64);
    for n in 0..sh.per_client {
        let due = t0 + offset.mul_f64(sh.interval.as_secs_f64()) + sh.interval * n as u32;
        tokio::time::sleep_until(due).await;
        if due.elapsed() > LATE {
            sh.late_sends.fetch_add(1, Ordering::Relaxed);
        }
        let idx = conn * sh.per_client + n;
        let frame = format!(
            r#"{{"action":"sendMessage","content":"load {idx}","clientMessageId":"c{idx}"}}"#
        );
        sh.sent_at[idx].store(sh.ns() + 1, Ordering::Release);
        if sink.send(WsMessage::Text(frame.into())).await.is_err() {
            sh.sent_at[idx].store(0, Ordering::Release);
            sh.send_failed.fetch_add(1, Ordering::Relaxed);
            break;
        }
        sh.sent.fetch_add(1, Ordering::Relaxed);
    }
    sink
}

async fn reader(
    conn: usize,
    mut stream: SplitStream<Socket>,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let (session, bit) = (conn / PER_SESSION, 1u8 << (conn % PER_SESSION));
    let mut out = Samples {
        user: Vec::with_capacity(sh.per_client * PER_SESSION),
        reply: Vec::with_capacity(sh.per_client * PER_SESSION),
        ack: Vec::with_capacity(sh.per_client),
    };
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {
                if !*stop.borrow() {
                    sh.closed_early.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        let now = sh.ns();
        sh.frames.fetch_add(1, Ordering::Relaxed);
        let Ok(f) = serde_json::from_str::<Frame>(text.as_str()) else {
            sh.other.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // The index of the user message a frame is about, from `load <idx>` / `c<idx>`.
        let index = |s: &str| -> Option<usize> {
            let tail = s.rsplit([' ', 'c']).next()?;
            tail.parse().ok().filter(|&i: &usize| i < sh.sent_at.len())
        };
        let latency = |idx: usize| -> Option<u32> {
            let at = sh.sent_at[idx].load(Ordering::Acquire);
            (at != 0).then(|| (now.saturating_sub(at - 1) / 1000) as u32)
        };
        match &*f.event {
            "message" => {
                let Some(m) = f.message else {
                    sh.other.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (seen, recv, lat) = match &*m.role {
                    "user" => (&sh.user_seen, &sh.user_recv, &mut out.user),
                    "assistant" => (&sh.reply_seen, &sh.reply_recv, &mut out.reply),
                    _ => {
                        sh.other.fetch_add(1, Ordering::Relaxed);
                        sh.record_error(&text);
                        continue;
                    }
                };
                let Some(idx) = index(&m.content) else {
                    sh.other.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if idx / sh.per_client / PER_SESSION != session {
                    sh.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if seen[idx].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                    sh.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                recv.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = latency(idx) {
                    lat.push(l);
                }
                sh.last_receipt_ns.fetch_max(now, Ordering::Relaxed);
                if let Some(c) = sh.per_second.get((now / 1_000_000_000) as usize) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" => {
                sh.acks.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = f
                    .client_message_id
                    .as_deref()
                    .and_then(index)
                    .and_then(latency)
                {
                    out.ack.push(l);
                }
            }
            "status" => {
                sh.statuses.fetch_add(1, Ordering::Relaxed);
            }
            "typing" => {
                sh.typing.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                sh.errors.fetch_add(1, Ordering::Relaxed);
                sh.record_error(&text);
            }
            _ => {
                sh.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    out
}

impl Shared {
    fn record_error(&self, frame: &str) {
        let mut e = self.error_samples.lock().unwrap();
        if e.len() < 5 {
            e.push(frame.chars().take(300).collect());
        }
    }
}

/// A log line without its terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `p50 / p99 / max` of µs samples, in ms.
fn pcts(v: &mut [u32]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |us: u32| us as f64 / 1000.0;
    format!(
        "{:.2} / {:.2} / {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0))
    )
}

/// What the server had stored when the drain ended: messages by role and status, and the
/// dispatch jobs still queued; tells a reply that is late (still queued) from one that is lost.
fn store_summary(dir: &std::path::Path) -> String {
    let read = || -> rusqlite::Result<String> {
        let c = rusqlite::Connection::open_with_flags(
            dir.join("chat.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut stmt = c.prepare(
            "SELECT role, status, count(*) FROM messages GROUP BY role, status ORDER BY role, status",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(format!(
                "{} {} {}",
                r.get::<_, i64>(2)?,
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        })?;
        let mut parts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let jobs: i64 = c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?;
        parts.push(format!("{jobs} dispatch jobs queued"));
        Ok(parts.join(", "))
    };
    read().unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// The `chat-local` child of this process (the harness does not expose its pid).
fn server_pid() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (ppid == me && comm.ends_with("(chat-local")).then_some(pid)
    })
}

/// utime + stime of `/proc/<who>/stat`, in clock ticks.
fn cpu_ticks(who: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split(' ').collect();
    // After the comm: state is field 3, utime 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` line of `/proc/<pid>/status`.
fn read_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The server inherits this process's open-file limit: 1,000 sockets each side need room.
fn check_fd_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(soft) = soft
        && soft < (CLIENTS as u64) * 2 + 256
    {
        eprintln!(
            "open-file limit {soft} is too low for {CLIENTS} clients; run `ulimit -n 4096` first"
        );
        std::process::exit(2);
    }
}
