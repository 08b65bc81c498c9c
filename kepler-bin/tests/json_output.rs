//! Issue 17: `--exporter.json=PATH` writes one JSON document per tick, in the versioned
//! schema the README documents (`kepler.tick/v1`); this test checks every document of a real
//! run against that schema (field names and types) and against the fake meter's watts.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{FakeRapl, Kepler};

/// Field -> JSON type of the README's schema, per object.
const DOC: &[(&str, &str)] = &[
    ("schema", "string"),
    ("node", "string"),
    ("time", "number"),
    ("interval_seconds", "number"),
    ("cpu_usage_ratio", "number"),
    ("zones", "array"),
    ("processes", "array"),
    ("containers", "array"),
    ("pods", "array"),
    ("vms", "array"),
    ("gpus", "array"),
];
const ZONE: &[(&str, &str)] = &[
    ("zone", "string"),
    ("path", "string"),
    ("source", "string"),
    ("estimated", "bool"),
    ("joules", "number"),
    ("watts", "number"),
    ("active_joules", "number"),
    ("active_watts", "number"),
    ("idle_joules", "number"),
    ("idle_watts", "number"),
];
const PROCESS: &[(&str, &str)] = &[
    ("pid", "number"),
    ("comm", "string"),
    ("exe", "string"),
    ("type", "string"),
    ("state", "string"),
    ("container_id", "string"),
    ("vm_id", "string"),
    ("cpu_seconds", "number"),
    ("joules", "object"),
    ("watts", "object"),
];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Exactly these fields, each of its type.
fn check(what: &str, v: &Value, schema: &[(&str, &str)]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
    want.sort_unstable();
    assert_eq!(keys, want, "{what}: {v}");
    for (k, ty) in schema {
        assert_eq!(kind(&obj[*k]), *ty, "{what}.{k}: {v}");
    }
}

#[test]
fn json_lines_follow_the_v1_schema_issue_17() {
    let rapl = FakeRapl::start(&[("package-0", 40.0), ("dram", 6.0)], 1 << 40);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticks.jsonl");
    let arg = format!("--exporter.json={}", path.display());
    let mut kepler = Kepler::start(&[
        "--host.sysfs",
        rapl.sysfs().to_str().unwrap(),
        "--monitor.interval=300ms",
        &arg,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(kepler.terminate().code(), Some(0), "{}", kepler.log());
    let docs: Vec<Value> = text
        .lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(docs.len() >= 5, "{text}");
    let mut last_joules = 0.0;
    for (i, d) in docs.iter().enumerate() {
        check("doc", d, DOC);
        assert_eq!(d["schema"], "kepler.tick/v1");
        for z in d["zones"].as_array().unwrap() {
            check("zone", z, ZONE);
        }
        let procs = d["processes"].as_array().unwrap();
        assert!(!procs.is_empty(), "the real /proc has processes");
        for p in procs {
            check("process", p, PROCESS);
            assert!(p["joules"]["package"].is_number(), "{p}");
        }
        let pkg = d["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["zone"] == "package")
            .expect("package zone");
        let joules = pkg["joules"].as_f64().unwrap();
        assert!(joules >= last_joules, "doc {i}: joules went back");
        last_joules = joules;
        // After the first two ticks the package draws the fake tree's 40 W.
        if i >= 2 {
            let w = pkg["watts"].as_f64().unwrap();
            assert!((w - 40.0).abs() < 4.0, "doc {i}: {w} W");
        }
    }
}
