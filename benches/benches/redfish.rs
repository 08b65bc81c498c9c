//! Redfish platform power (issue #6):
//!
//! - parsing the largest fixture, the Delta power shelf's expanded Sensors (budget: 1 ms);
//! - the CPU cost of one BMC walk, fixture files served from memory (no network);
//! - what the monitor tick pays for 4 BMCs, one of them hung: a cache copy, no waiting;
//! - a scrape while 4 BMCs are polled and one hangs (budget: p99 <= 5 ms); the bench prints
//!   p50/p99/max of every scrape it timed.
//!
//! `cargo bench -p kepler-benches --bench redfish`

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kepler_core::{Attributor, PowerFrame, PowerSource, SourceReport, Timestamp};
use kepler_export::{
    ExportContext, Exposition, MetricsHandle, MetricsLevel, SelfStats, Server, ServerConfig,
    SourceSelf,
};
use kepler_sources::redfish::{
    readings_in, walk, BmcConfig, Fetch, FetchError, FetchErrorKind, Redfish, RedfishOptions,
    Secret,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kepler-sources/tests/fixtures/redfish")
}

/// Every `index.json` of a fixture case, keyed by URL path (no trailing slash).
fn load_tree(case: &str) -> HashMap<String, Vec<u8>> {
    fn visit(dir: &Path, root: &Path, out: &mut HashMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                visit(&p, root, out);
            } else if p.file_name().is_some_and(|n| n == "index.json") {
                let rel = p.parent().unwrap().strip_prefix(root).unwrap();
                out.insert(format!("/{}", rel.display()), std::fs::read(&p).unwrap());
            }
        }
    }
    let root = fixtures().join(case);
    let mut out = HashMap::new();
    visit(&root, &root, &mut out);
    out
}

/// A BMC answered from memory: the walk's parsing and bookkeeping without the network.
struct MemoryBmc(HashMap<String, Vec<u8>>);

impl Fetch for MemoryBmc {
    fn get(
        &self,
        path: &str,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, FetchError>> + Send {
        let r = match self.0.get(path.trim_end_matches('/')) {
            Some(body) => kepler_sources::redfish::parse_resource(body)
                .map_err(|m| FetchError::new(FetchErrorKind::Parse, path, m)),
            None => Err(FetchError::new(FetchErrorKind::NotFound, path, "404")),
        };
        std::future::ready(r)
    }
}

/// Serves a fixture tree over HTTP/1.1 keep-alive; POST (login) gets 404, so basic auth.
fn serve_tree(tree: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tree = Arc::new(tree);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let tree = tree.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    let found = line
                        .starts_with("GET")
                        .then(|| tree.get(path.trim_end_matches('/')))
                        .flatten();
                    let (status, body) = match found {
                        Some(b) => ("200 OK", b.as_slice()),
                        None => ("404 Not Found", &b"{}"[..]),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if w.write_all(head.as_bytes()).is_err() || w.write_all(body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn bmc(id: &str, endpoint: &str) -> BmcConfig {
    BmcConfig {
        id: id.into(),
        endpoint: endpoint.into(),
        username: "admin".into(),
        password: Secret::new("bench"),
        insecure: false,
    }
}

/// Three BMCs serving fixture trees and one that accepts connections and never answers.
fn four_bmcs_one_hung() -> (Redfish, TcpListener) {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let bmcs = vec![
        bmc("lenovo", &serve_tree(load_tree("lenovo-xcc-sr670v2"))),
        bmc("dell", &serve_tree(load_tree("dell-idrac9-r640"))),
        bmc("delta", &serve_tree(load_tree("delta-powershelf"))),
        bmc("hung", &format!("http://{}", hung.local_addr().unwrap())),
    ];
    let opts = RedfishOptions {
        interval: Duration::from_secs(1),
        http_timeout: Duration::from_secs(2),
        ..RedfishOptions::default()
    };
    let mut src = Redfish::start(bmcs, opts).unwrap();
    // Wait until the three live BMCs have been walked (3 + 1 + 1 zones).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut f = PowerFrame::default();
        src.read(Timestamp(1), &mut f);
        if f.samples.iter().filter(|s| s.reading.is_ok()).count() >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "BMCs not walked");
        std::thread::sleep(Duration::from_millis(20));
    }
    (src, hung)
}

fn parse(c: &mut Criterion) {
    let body = std::fs::read(
        fixtures().join("delta-powershelf/redfish/v1/Chassis/PowerShelf_0/Sensors/index.json"),
    )
    .unwrap();
    let mut group = c.benchmark_group("redfish");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse/delta_sensors_71KB", |b| {
        b.iter(|| readings_in(&body, "PowerShelf_0").unwrap())
    });
    group.finish();
}

fn walk_cost(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("redfish");
    for case in [
        "lenovo-xcc-sr670v2",
        "dmtf-public-rackmount1",
        "delta-powershelf",
    ] {
        let bmc = MemoryBmc(load_tree(case));
        group.bench_function(format!("walk_in_memory/{case}"), |b| {
            b.iter(|| rt.block_on(walk(&bmc)).unwrap())
        });
    }
    group.finish();
}

fn tick(c: &mut Criterion) {
    let (mut src, _hung) = four_bmcs_one_hung();
    let mut frame = PowerFrame::default();
    let mut report = SourceReport::default();
    let mut group = c.benchmark_group("redfish");
    group.bench_function("tick_read_4_bmcs_one_hung", |b| {
        b.iter(|| {
            frame.clear();
            report.clear();
            src.read(Timestamp(1), &mut frame);
            src.report(Timestamp(1), &mut report);
        })
    });
    group.finish();
}

fn handle_has_platform(handle: &MetricsHandle) -> bool {
    handle
        .latest()
        .is_some_and(|e| e.text().windows(21).any(|w| w == b"kepler_platform_watts"))
}

fn scrape(c: &mut Criterion) {
    let (mut src, _hung) = four_bmcs_one_hung();
    let handle = MetricsHandle::new();
    handle.set_ready(true);
    let ctx = ExportContext {
        node_name: "worker-1".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    };
    // A monitor loop every 50 ms: read the Redfish cache, step, render, publish.
    let stop = Arc::new(AtomicBool::new(false));
    let (h2, s2) = (handle.clone(), stop.clone());
    let monitor = std::thread::spawn(move || {
        let mut engine = Attributor::default();
        let t0 = Instant::now();
        let mut frame = PowerFrame::default();
        while !s2.load(Ordering::Relaxed) {
            let at = Timestamp(t0.elapsed().as_nanos() as u64);
            frame.clear();
            src.read(at, &mut frame);
            let mut report = SourceReport::default();
            src.report(at, &mut report);
            let snap = engine.step(&frame, None, at);
            let stats = SelfStats {
                sources: vec![SourceSelf {
                    source: "redfish".into(),
                    report,
                    ..Default::default()
                }],
                ..Default::default()
            };
            h2.publish(Exposition::render(&snap, None, &ctx, &stats));
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(Server::bind(ServerConfig {
            listen: vec!["127.0.0.1:0".into()],
            web: None,
        }))
        .unwrap();
    let addr = server.local_addrs()[0];
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = handle.clone();
    let serving = runtime.spawn(server.run(handle, async {
        let _ = stopped.await;
    }));

    // Wait for the first exposition with platform series.
    while !handle_has_platform(&probe) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut body = Vec::new();
    let mut get = || {
        conn.get_mut().write_all(&request).unwrap();
        let mut len = 0;
        let mut line = String::new();
        loop {
            line.clear();
            conn.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        body.resize(len, 0);
        conn.read_exact(&mut body).unwrap();
        assert!(body.windows(21).any(|w| w == b"kepler_platform_watts"));
    };
    let mut latencies = Vec::new();
    let mut group = c.benchmark_group("redfish");
    group.bench_function("scrape_4_bmcs_one_hung", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                get();
                let d = t.elapsed();
                latencies.push(d);
                total += d;
            }
            total
        })
    });
    group.finish();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "redfish/scrape_4_bmcs_one_hung: {} scrapes, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    let _ = stop_server.send(());
    let _ = runtime.block_on(serving);
}

criterion_group!(benches, parse, walk_cost, tick, scrape);
criterion_main!(benches);
