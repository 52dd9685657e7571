//! What the `vmove serve` tests share: the server run as a user would (its address read from
//! its first lines), a plain HTTP/1.1 client over a TCP socket to 127.0.0.1 (no client crate),
//! and a slow simulated evacuation to watch.
#![allow(clippy::unwrap_used, dead_code)]

use crate::support::{Sandbox, bin};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sim hosts slow enough to watch: `a` with six VMs moving one at a time to `b` at 10x real time
/// and 100 MB/s (about 1.5 s each), one of them named like an attack on the page.
pub const SLOW_SIM: &str = r#"
[defaults]
progress_interval = "1s"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 1
stream_mb_s = 100
vms = [
  { name = "web-1", memory_gib = 0.5, disk_gib = 1 },
  { name = "<img src=x onerror=alert(1)>", memory_gib = 0.5, disk_gib = 1 },
  { name = "db-1", memory_gib = 0.5, disk_gib = 1 },
  { name = "web-2", memory_gib = 0.5, disk_gib = 1 },
  { name = "web-3", memory_gib = 0.5, disk_gib = 1 },
  { name = "web-4", memory_gib = 0.5, disk_gib = 1 },
]
[hosts.b]
driver = "sim"
speed = 10
stream_mb_s = 100
memory_gib = 64
"#;

/// The hostile VM name of [`SLOW_SIM`].
pub const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vmove evacuate a --to b` in the background (another process writing the journal).
pub fn start_evacuation(sb: &Sandbox) -> Proc {
    let child = sb
        .cmd(&["evacuate", "a", "--to", "b", "--plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child }
}

/// Waits until the journal has a run and returns its id.
pub fn wait_for_run(sb: &Sandbox) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if sb.journal().exists() {
            let r = sb.run(&["history", "--json"]);
            if r.code == Some(0) {
                let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
                if let Some(id) = v["runs"][0]["id"].as_str() {
                    return id.to_owned();
                }
            }
        }
        assert!(Instant::now() < until, "no run in the journal after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `vmove serve`, and its address.
pub struct Server {
    pub proc: Proc,
    pub port: u16,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// `vmove serve --port 0 ARGS` with `env`; waits for its address.
    pub fn start(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut all = vec!["serve", "--port", "0"];
        all.extend_from_slice(args);
        let mut c: Command = sb.cmd(&all);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let keep = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let proc = Proc { child };
        let mut port = None;
        for _ in 0..4 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(rest) = line
                .trim()
                .strip_prefix("vmove serve: listening on http://127.0.0.1:")
            {
                port = Some(rest.trim_end_matches('/').parse().unwrap());
                break;
            }
        }
        let Some(port) = port else {
            std::thread::sleep(Duration::from_millis(200));
            panic!("serve said no address; stderr: {}", stderr.lock().unwrap());
        };
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Server { proc, port, stderr }
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, &[], None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`), to 127.0.0.1 only.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    request_within(port, method, path, headers, body, Duration::from_secs(20))
}

/// [`request`] with its own read time-out (a browser's start on a loaded machine takes long).
pub fn request_within(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    // Until the server closes, or the body its Content-Length announces is in: a server may
    // keep the connection open whatever `Connection: close` asked (chromedriver does).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = length
                && raw.len() >= end + 4 + len
            {
                break;
            }
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An open event stream (`/runs/RUN/events`), read event by event.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub fn open(port: u16, path: &str) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "events: {status}");
        let mut ctype = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                ctype = line;
            }
        }
        assert!(ctype.contains("text/event-stream"), "{ctype}");
        Events { reader }
    }

    /// The next event: its kind and its data as JSON (`None` when the stream ended). Chunked
    /// framing lines (sizes) are skipped: an event's lines start with `event:` or `data:`.
    pub fn next(&mut self) -> Option<(String, serde_json::Value)> {
        let mut kind = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                return Some((kind, serde_json::from_str(d).unwrap()));
            }
        }
    }
}

/// Kills the child after `limit` if it has not ended, and returns its exit code.
pub fn wait_within(p: &mut Proc, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > until {
            let _ = p.child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of the binary (for messages).
pub fn vmove() -> std::path::PathBuf {
    bin()
}
