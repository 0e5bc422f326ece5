//! Test harness: runs the real `chat-local` binary on an ephemeral 127.0.0.1 port with a
//! temporary data folder, and drives it only from outside, over HTTP and WebSocket.
//! Every wait is bounded; servers are killed when their handle drops.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

pub const WEBHOOK_SECRET: &str = "integration-webhook-secret";
pub const SESSION_SECRET: &str = "integration-session-secret";
/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `chat-local`.
pub struct Server {
    child: Child,
    pub url: String,
    pub ws_url: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server on a fresh data folder (kept alive by the returned `TempDir`).
    pub async fn start(env: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Server::start_in(dir.path(), env).await;
        (server, dir)
    }

    /// Starts a server on `data_dir`.
    pub async fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_limited(data_dir, env, None).await
    }

    /// Starts a server on `data_dir` whose open-file limit (soft and hard) is `open_files`
    /// when given, as on a machine with a low limit.
    pub async fn start_limited(
        data_dir: &Path,
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-local"));
        cmd.env_clear()
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("CHAT_DATA_DIR", data_dir)
            .env("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("CHAT_SESSION_SECRET", SESSION_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(n) = open_files {
            // SAFETY: only a setrlimit system call runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
            }
        }
        let mut child = cmd.spawn().expect("chat-local starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("chat-local announced its address in time")
            .expect("stdout readable")
            .unwrap_or_else(|| panic!("chat-local exited: {}", log_of(data_dir)));
        let url = line.rsplit(' ').next().unwrap().to_string();
        assert!(
            url.starts_with("http://127."),
            "unexpected first line {line:?}"
        );
        // Keep draining stdout so the child never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
        let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        Server {
            child,
            url,
            ws_url,
            data_dir: data_dir.to_path_buf(),
            http,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// How many file descriptors the server has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    /// An HTTP client whose connections come from the local address `from` (a 127.0.0.x).
    pub fn http_from(from: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(from.parse::<std::net::IpAddr>().unwrap())
            .timeout(WAIT)
            .build()
            .unwrap()
    }

    /// A raw TCP connection to the server from the local address `from` (a 127.0.0.x).
    pub async fn tcp_from(&self, from: &str) -> TcpStream {
        tcp_from(from, self.addr(), None).await
    }

    /// A WebSocket of `s` from the local address `from` (a 127.0.0.x).
    pub async fn connect_from(&self, s: &Session, from: &str) -> Ws {
        let url = format!("{}?sessionId={}&token={}", self.ws_url, s.id, s.token);
        Ws::connect_from(&url, self.addr(), from, None).await
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: the `kill` command sends the signal.
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    pub fn log(&self) -> String {
        log_of(&self.data_dir)
    }

    pub async fn create_session(&self) -> Session {
        let (status, body, _) = self
            .request("POST", "/sessions", None, Some(b"".to_vec()), &[])
            .await;
        assert_eq!(status, 201, "{body}");
        Session {
            id: body["sessionId"].as_str().unwrap().to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            body,
        }
    }

    /// One HTTP request; returns status, JSON body (Null if not JSON) and headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let res = rb.send().await.expect("request reaches the server");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        )
    }

    /// `POST /sessions/{id}/messages`.
    pub async fn send(&self, s: &Session, content: &str, client_id: Option<&str>) -> (u16, Value) {
        let mut body = json!({ "content": content });
        if let Some(c) = client_id {
            body["clientMessageId"] = json!(c);
        }
        let (status, v, _) = self
            .request(
                "POST",
                &format!("/sessions/{}/messages", s.id),
                Some(&s.token),
                Some(body.to_string().into_bytes()),
                &[],
            )
            .await;
        (status, v)
    }

    /// `GET /sessions/{id}/messages?<query>`: the messages array.
    pub async fn history(&self, s: &Session, query: &str) -> Vec<Value> {
        let (status, v, _) = self
            .request(
                "GET",
                &format!("/sessions/{}/messages?{query}", s.id),
                Some(&s.token),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["messages"].as_array().unwrap().clone()
    }

    /// Waits until the history satisfies `pred`, polling over HTTP.
    pub async fn wait_history(
        &self,
        s: &Session,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let h = self.history(s, "after=0&limit=100").await;
            if pred(&h) {
                return h;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; history: {h:#?}\nserver log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn connect(&self, s: &Session) -> Ws {
        Ws::connect(&format!(
            "{}?sessionId={}&token={}",
            self.ws_url, s.id, s.token
        ))
        .await
    }
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// A session as the tests hold it.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub token: String,
    pub body: Value,
}

/// A WebSocket client that collects JSON frames.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub seen: Vec<Value>,
}

/// A TCP connection to `to` from the local address `from` (a 127.0.0.x), with a receive
/// buffer of `recv_buffer` bytes when given.
pub async fn tcp_from(from: &str, to: std::net::SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n).unwrap();
    }
    socket
        .bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let tcp = tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .expect("connects in time")
        .expect("connects");
    tcp.set_nodelay(true).unwrap();
    tcp
}

impl Ws {
    /// A WebSocket to `url` (served at `to`) from the local address `from`, with a receive
    /// buffer of `recv_buffer` bytes when given.
    pub async fn connect_from(
        url: &str,
        to: std::net::SocketAddr,
        from: &str,
        recv_buffer: Option<u32>,
    ) -> Ws {
        let tcp = tcp_from(from, to, recv_buffer).await;
        let (stream, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("WebSocket connects in time")
        .expect("WebSocket connects");
        Ws {
            stream,
            seen: Vec::new(),
        }
    }

    /// Reads until the server's close frame; its code and reason (`None`: closed without one).
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the socket closes in time");
            match msg {
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(tungstenite::Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str(&t) {
                        self.seen.push(v);
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }

    pub async fn connect(url: &str) -> Ws {
        let (stream, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .expect("WebSocket connects in time")
        .expect("WebSocket connects");
        Ws {
            stream,
            seen: Vec::new(),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(tungstenite::Message::Text(text.into()))
            .await
            .expect("frame sent");
    }

    /// The next JSON frame, or `None` once the socket is closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a frame arrives in time");
            match msg {
                Some(Ok(tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("frames are JSON");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until one satisfies `pred`; panics with the frames seen otherwise.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next().await {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "socket closed while waiting for {what}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

pub fn is_event(v: &Value, event: &str) -> bool {
    v["event"] == event
}

#[allow(unused_imports)] // each test target uses part of the harness
pub use chat_testkit::fake_n8n::{FakeN8n, unix_now};

/// A fake n8n signing with this harness's webhook secret.
pub async fn fake_n8n(port: u16) -> (FakeN8n, String) {
    FakeN8n::start_on(port, WEBHOOK_SECRET).await
}

/// POSTs `body` signed with the test webhook secret at `timestamp`; returns status and JSON.
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    timestamp: i64,
) -> (u16, Value) {
    chat_testkit::fake_n8n::post_signed(http, url, body, WEBHOOK_SECRET, timestamp).await
}

/// An n8n that is down: it accepts each connection and drops it at once, counting them, so a
/// test can see the attempts without reading the server's log. `stop` frees its port.
pub struct DroppingPeer {
    pub url: String,
    pub port: u16,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DroppingPeer {
    pub async fn start() -> DroppingPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = attempts.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        DroppingPeer {
            url: format!("http://127.0.0.1:{port}/webhook/chat"),
            port,
            attempts,
            task,
        }
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` attempts came.
    pub async fn wait_for_attempts(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.attempts() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} attempts came",
                self.attempts()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops listening; its port is free for a real (fake) n8n.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A port on 127.0.0.1 that nothing listens on (until someone binds it).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
