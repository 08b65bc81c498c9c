//! A real Prometheus (Debian's `prometheus`) for end-to-end tests, and its HTTP API.

use std::collections::HashMap;
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, scrape, KillOnDrop};

/// `application/x-www-form-urlencoded` for a query string value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One series of a query answer: its labels and its (time, value) points.
#[derive(Debug)]
pub struct Series {
    pub labels: HashMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// A real Prometheus on a free loopback port with its TSDB in a temp dir, scraping one
/// target every second.
pub struct Prometheus {
    child: KillOnDrop,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes the kepler on `127.0.0.1:target_port` every second.
    pub fn start(target_port: u16) -> Prometheus {
        Prometheus::start_with(&format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: kepler\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ))
    }

    /// Runs with `config` as its prometheus.yml.
    pub fn start_with(config_yaml: &str) -> Prometheus {
        Prometheus::start_binary("prometheus", config_yaml)
    }

    /// Runs the Prometheus binary `program` with `config` as its prometheus.yml.
    pub fn start_binary(program: &str, config_yaml: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_yaml).unwrap();
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child: KillOnDrop(child),
            port,
            dir,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until a target has been scraped successfully (the first scrape lands several
    /// seconds after start: targets are picked up on a ~5 s cycle).
    pub fn wait_target_up(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            if let Ok(body) = scrape(self.port, "/api/v1/targets?state=active") {
                if body.contains("\"health\":\"up\"") {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!("prometheus never scraped a target:\n{}", self.log());
    }

    pub fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let body = scrape(self.port, &url)
            .unwrap_or_else(|e| panic!("{url}: {e}\nprometheus log:\n{}", self.log()));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(v["status"], "success", "{url}: {body}");
        v
    }

    pub fn parse(v: &Value) -> Vec<Series> {
        let number = |p: &Value| -> (f64, f64) {
            let t = p[0].as_f64().unwrap();
            let x = p[1].as_str().unwrap().parse::<f64>().unwrap();
            (t, x)
        };
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Series {
                labels: r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect(),
                points: match r.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(number).collect(),
                    None => vec![number(&r["value"])],
                },
            })
            .collect()
    }

    /// An instant query evaluated at `at` (Unix seconds).
    pub fn query(&self, q: &str, at: f64) -> Vec<Series> {
        Self::parse(&self.api(
            "/api/v1/query",
            &[("query", q.to_string()), ("time", format!("{at:.3}"))],
        ))
    }

    /// The single value of an instant query that must answer with exactly one series.
    pub fn scalar(&self, q: &str, at: f64) -> f64 {
        let r = self.query(q, at);
        assert_eq!(r.len(), 1, "{q} answered {r:?}");
        r[0].points[0].1
    }

    /// A range query from `start` to `end` every `step` seconds.
    pub fn query_range(&self, q: &str, start: f64, end: f64, step: f64) -> Vec<Series> {
        Self::parse(&self.api(
            "/api/v1/query_range",
            &[
                ("query", q.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step}")),
            ],
        ))
    }
}
