//! A real Kubernetes API server for tests: Debian's etcd and a kube-apiserver built from
//! Debian's kubernetes source by `scripts/kube-apiserver.sh`, on loopback, with a static token.
//! No kubelet, scheduler or controllers run: tests bind pods to nodes themselves, write pod
//! status with PATCHes to `/status`, and delete with grace period 0.

#![allow(dead_code)]

pub mod dashboard;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "kepler-test-token";

/// True when a missing API server must fail the test instead of skipping it.
pub fn required() -> bool {
    ["REQUIRE_K8S", "REQUIRE_KUBE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

/// Skips (prints why and returns `None`) or, when required, panics.
pub fn skip<T>(why: &str) -> Option<T> {
    if required() {
        panic!("REQUIRE_K8S=1 but the API server cannot run: {why}");
    }
    eprintln!("SKIPPED: {why} (run scripts/kube-apiserver.sh; REQUIRE_K8S=1 makes this fail)");
    None
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The cached kube-apiserver binary: `$KUBE_APISERVER`, else the script's cache path.
pub fn apiserver_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBE_APISERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("KEPLER_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kepler-rs")))?;
    let p = cache.join("kube-apiserver-1.20.2");
    p.is_file().then_some(p)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// etcd plus one kube-apiserver, killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    pub etcd_port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut a) = self.apiserver.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

impl Cluster {
    /// Starts etcd and the API server, or says why not.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = apiserver_binary() else {
            return skip("no kube-apiserver binary at ~/.cache/kepler-rs/kube-apiserver-1.20.2");
        };
        let Some(etcd_bin) = which("etcd") else {
            return skip("no etcd on PATH (Debian package etcd-server)");
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{TOKEN},kepler-test,kepler-test,system:masters\n"),
        )
        .unwrap();
        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd = Command::new(etcd_bin)
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut c = Cluster {
            dir,
            etcd,
            apiserver: None,
            bin,
            port: free_port(),
            etcd_port,
        };
        c.start_apiserver();
        Some(c)
    }

    fn start_apiserver(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("apiserver.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                d.join("certs/apiserver.key").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d.join("certs/apiserver.key").display()
            ))
            // Watches go to etcd, so a compaction makes an old resourceVersion 410 Gone.
            .arg("--watch-cache=false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.apiserver = Some(child);
        self.wait_ready();
    }

    /// Waits until the port accepts connections (certificates are written before that).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "kube-apiserver not listening after 90 s:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the API server's log and of etcd's (an API server that never gets
    /// ready is most often waiting for etcd).
    pub fn log_tail(&self) -> String {
        let tail = |name: &str, n: usize| {
            let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "{}\n--- etcd.log (last 15 lines):\n{}",
            tail("apiserver.log", 30),
            tail("etcd.log", 15)
        )
    }

    /// Waits until `/readyz` answers 200 (RBAC bootstrap done, namespaces created).
    pub async fn ready(&self) {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            let ns = http::Request::get("/api/v1/namespaces/default")
                .body(Vec::new())
                .unwrap();
            if client.request_text(req).await.is_ok() && client.request_text(ns).await.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("kube-apiserver not ready after 90 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops and starts the API server again (same etcd, port and certificates).
    pub fn restart_apiserver(&mut self) {
        if let Some(mut a) = self.apiserver.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        self.start_apiserver();
    }

    /// The CA that signed the serving certificate (the second PEM block of the cert file).
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.crt");
        let pem = std::fs::read_to_string(self.dir.path().join("certs/apiserver.crt")).unwrap();
        let blocks: Vec<&str> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
        std::fs::write(&path, blocks.last().unwrap()).unwrap();
        path
    }

    /// A kubeconfig for `https://127.0.0.1:<port>` with the test token.
    pub fn kubeconfig(&self, port: u16, name: &str) -> PathBuf {
        write_kubeconfig(
            &self.dir.path().join(name),
            &format!("https://127.0.0.1:{port}"),
            &self.ca_file(),
            TOKEN,
        )
    }

    /// A kube client for the test's own requests.
    pub async fn client(&self) -> kube::Client {
        let cfg =
            kepler_k8s::load_client_config(Some(&self.kubeconfig(self.port, "admin.kubeconfig")))
                .await
                .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// etcd's current revision (through its JSON gateway).
    pub fn etcd_revision(&self) -> u64 {
        let body = etcd_post(self.etcd_port, "/v3/kv/range", r#"{"key":"AA=="}"#);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["header"]["revision"].as_str().unwrap().parse().unwrap()
    }

    /// Compacts etcd's history up to its current revision: every older resourceVersion is gone.
    pub fn etcd_compact(&self) {
        let rev = self.etcd_revision();
        etcd_post(
            self.etcd_port,
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{rev}","physical":true}}"#),
        );
    }
}

pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
            ca = ca.display()
        ),
    )
    .unwrap();
    path.to_path_buf()
}

fn etcd_post(port: u16, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "etcd {path}: {out}");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // The gateway may answer chunked: the JSON object is the part between the braces.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_string(),
        _ => body.to_string(),
    }
}

/// A TCP forwarder the test can unplug: every connection is cut and new ones are refused
/// until it is plugged back in. It stands for a network partition between node and server.
pub struct Proxy {
    pub port: u16,
    plugged: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plugged = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (p, c) = (Arc::clone(&plugged), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !p.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            port,
            plugged,
            conns,
            accept,
        }
    }

    pub fn unplug(&self) {
        self.plugged.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn plug(&self) {
        self.plugged.store(true, Ordering::SeqCst);
    }
}

/// Polls `f` every 50 ms until it is true or `secs` pass.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
