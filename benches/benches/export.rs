//! Rendering the exposition for a 10,000-process snapshot (budget: 20 ms) and serving the
//! cached rendering over HTTP (budget: 1 ms per scrape).
//!
//! `cargo bench -p kepler-benches --bench export`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kepler_benches::{snapshot_of, SyntheticNode};
use kepler_core::CarbonLedger;
use kepler_export::{
    CarbonStats, ExportContext, Exposition, MetricsHandle, MetricsLevel, SelfStats, Server,
    ServerConfig,
};

fn context() -> ExportContext {
    ExportContext {
        node_name: "worker-node-17.example.internal".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    }
}

fn render(c: &mut Criterion) {
    let snap = snapshot_of(&mut SyntheticNode::new(10_000, 1_000));
    let ctx = context();
    let stats = SelfStats::default();
    let mut group = c.benchmark_group("export");
    let samples = Exposition::render(&snap, None, &ctx, &stats).samples();
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("render/10000p_1000c_4z", |b| {
        b.iter(|| Exposition::render(&snap, None, &ctx, &stats))
    });
    // Issue 20: the same with `carbon.intensity` set (node, container and pod CO2e counters
    // and the intensity gauges added).
    let carbon = SelfStats {
        carbon: Some(CarbonStats {
            carbon: Arc::new(CarbonLedger::new().step(&snap, Some(400.0))),
            ..Default::default()
        }),
        ..SelfStats::default()
    };
    println!(
        "samples: {samples} without carbon, {} with",
        Exposition::render(&snap, None, &ctx, &carbon).samples()
    );
    group.bench_function("render_carbon/10000p_1000c_4z", |b| {
        b.iter(|| Exposition::render(&snap, None, &ctx, &carbon))
    });
    group.finish();
}

/// One keep-alive HTTP/1.1 connection to a real server; reads whole responses.
struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Client {
    fn get(&mut self) -> usize {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .expect("send request");
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.expect("the server sends Content-Length for cached bodies");
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).expect("read body");
        length
    }
}

fn scrape(c: &mut Criterion) {
    let snap = snapshot_of(&mut SyntheticNode::new(10_000, 1_000));
    let handle = MetricsHandle::new();
    handle.publish(Exposition::render(
        &snap,
        None,
        &context(),
        &SelfStats::default(),
    ));
    handle.set_ready(true);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = runtime
        .block_on(Server::bind(ServerConfig {
            listen: vec!["127.0.0.1:0".into()],
            web: None,
        }))
        .expect("bind");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(handle, async {
        let _ = stopped.await;
    }));

    let mut group = c.benchmark_group("export");
    for (name, gzip) in [("scrape_cached/text", false), ("scrape_cached/gzip", true)] {
        let accept = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let mut client = Client {
            reader: BufReader::new(TcpStream::connect(addr).expect("connect")),
            request: format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").into_bytes(),
            body: Vec::new(),
        };
        let bytes = client.get(); // the first gzip request compresses, once
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| b.iter(|| client.get()));
    }
    group.finish();
    let _ = stop.send(());
    let _ = runtime.block_on(serving);
}

criterion_group!(benches, render, scrape);
criterion_main!(benches);
