//! Test helpers for Redfish: the real `sushy-static` server (PyPI `sushy-tools`) serving the
//! fixture trees, and a tiny scripted HTTP server for what sushy-static cannot do (sessions,
//! 401s, hangs, resets, garbage).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kepler_sources::redfish::{BmcConfig, Secret};

/// The mockup tree of a fixture case, as `sushy-static -m` wants it.
pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/redfish")
        .join(case)
        .join("redfish/v1")
}

/// A BMC config for `endpoint` with test credentials.
pub fn bmc(id: &str, endpoint: &str) -> BmcConfig {
    BmcConfig {
        id: id.into(),
        endpoint: endpoint.into(),
        username: "admin".into(),
        password: Secret::new("test-password-do-not-log"),
        insecure: false,
    }
}

/// True when sushy-static can run; otherwise prints why the test is skipped, or panics when
/// `REQUIRE_REDFISH=1` (CI) says it must run.
pub fn sushy_or_skip(test: &str) -> bool {
    let found = Command::new("sushy-static")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("REQUIRE_REDFISH").as_deref() == Ok("1") {
        panic!(
            "{test}: sushy-static is not on PATH but REQUIRE_REDFISH=1 (pip install sushy-tools)"
        );
    }
    eprintln!("SKIP {test}: sushy-static not found (pip install sushy-tools; REQUIRE_REDFISH=1 makes this fail)");
    false
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running sushy-static; killed on drop.
pub struct Sushy {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Sushy {
    /// Serves `case` and waits until its ServiceRoot answers.
    pub fn start(case: &str) -> Sushy {
        Self::start_with(case, &[])
    }

    /// Like `start`, with extra arguments (e.g. `-c cert -k key` for HTTPS).
    pub fn start_with(case: &str, extra: &[&str]) -> Sushy {
        let tls = !extra.is_empty();
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new("sushy-static")
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m"])
                .arg(fixture(case))
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sushy-static");
            let scheme = if tls { "https" } else { "http" };
            let mut s = Sushy {
                child,
                endpoint: format!("{scheme}://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = s.child.try_wait() {
                    break; // port taken or bad arguments: try another port
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
        }
        panic!("sushy-static did not start for {case}");
    }
}

impl Sushy {
    /// `sushy-emulator --fake` (the dynamic emulator of the same package: no Power
    /// resources, but real HTTP basic auth from an htpasswd file) with its config file.
    pub fn emulator(config: &std::path::Path) -> Sushy {
        let port = free_port();
        let child = Command::new("sushy-emulator")
            .args([
                "--fake",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sushy-emulator");
        let mut s = Sushy {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("sushy-emulator exited: {status}");
            }
            assert!(Instant::now() < deadline, "sushy-emulator did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server does with one request.
pub enum Reply {
    /// A full response.
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept and never answer (until the server stops).
    Hang,
    /// Promise `len` bytes, send `part`, then reset the connection.
    Truncate { len: usize, part: Vec<u8> },
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Send {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on 127.0.0.1, one thread per connection; it records every
/// request. Stopped (hanging connections released) on drop.
pub struct TestBmc {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl TestBmc {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> TestBmc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, stop2) = (requests.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (h, r, s) = (handler.clone(), reqs.clone(), stop2.clone());
                        std::thread::spawn(move || serve(conn, &*h, &r, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestBmc {
            addr,
            requests,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestBmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    conn.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Request {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        log.lock().unwrap().push(req.clone());
        match handler(&req) {
            Reply::Send {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
                    return;
                }
            }
            Reply::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Reply::Truncate { len, part } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
                );
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&part);
                let _ = out.flush();
                return; // dropping the socket closes it short of `len`
            }
        }
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
