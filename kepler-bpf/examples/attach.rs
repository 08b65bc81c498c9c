//! Loads and attaches the eBPF activity source, holds it until stdin closes, reading it
//! every `--interval-ms` (default 1000), then prints per-program run statistics (with
//! `sysctl kernel.bpf_stats_enabled=1`) and the source's self-metrics. Used by
//! `scripts/bpf-overhead.sh`.
//!
//! `cargo run --release -p kepler-bpf --features libbpf --example attach`

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use kepler_bpf::{BpfActivity, BpfOptions};
use kepler_core::{ActivityFrame, ActivitySource, Timestamp};

fn main() {
    let interval = std::env::args()
        .skip_while(|a| a != "--interval-ms")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    let mut src = match BpfActivity::new(BpfOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("attach: {e}");
            std::process::exit(1);
        }
    };
    println!("attached");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let mut frame = ActivityFrame::default();
    let mut reads = 0u64;
    while rx.recv_timeout(Duration::from_millis(interval)).is_err() {
        frame.clear();
        if src.read(Timestamp(reads), &mut frame).is_ok() {
            reads += 1;
        }
    }
    for (name, cnt, ns) in src.program_run_stats() {
        let per = if cnt > 0 { ns as f64 / cnt as f64 } else { 0.0 };
        println!("program {name}: {cnt} runs, {ns} ns, {per:.1} ns/run");
    }
    let s = src.stats();
    println!(
        "reads {reads}, processes {}, map entries {}/{}, dropped {}, deleted {}, last read {:?}",
        frame.processes.len(),
        s.map_entries,
        s.map_capacity,
        s.events_dropped,
        s.entries_deleted,
        s.read_duration
    );
}
