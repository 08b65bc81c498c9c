//! `kepler top --url` against the real exporter behind TLS and basic auth (its web config),
//! and the command line of `kepler top` (issue 18).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kepler_bin::top::remote::{client, scrape, RemoteOptions};
use kepler_core::ZoneKind;
use support::{free_port, FakeRapl, KillOnDrop};

fn options(port: u16, ca: Option<&std::path::Path>, auth: Option<(&str, &str)>) -> RemoteOptions {
    RemoteOptions {
        url: format!("https://localhost:{port}/metrics").parse().unwrap(),
        ca_file: ca.map(Into::into),
        basic_auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        timeout: Duration::from_secs(5),
        refresh: Duration::from_secs(1),
    }
}

#[test]
fn scrapes_over_tls_with_basic_auth_and_says_why_not() {
    let rapl = FakeRapl::start(&[("package-0", 40.0)], 262_143_328_850);
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca = dir.path().join("server.crt");
    std::fs::write(&ca, key.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        key.signing_key.serialize_pem(),
    )
    .unwrap();
    // Cost 4 keeps the test fast; the exporter accepts any cost.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  top: {hash}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _kepler = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_kepler"))
            .args([
                "--host.sysfs",
                rapl.sysfs().to_str().unwrap(),
                "--monitor.interval=1s",
                "--cpu.preferred-meters=rapl",
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--web.config-file={}", web.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let origin = Instant::now();
    let good = options(port, Some(&ca), Some(("top", "s3cret")));
    let http = client(&good).unwrap();
    // Until the exporter listens and has ticked twice (package watts over a whole interval).
    let deadline = Instant::now() + Duration::from_secs(30);
    let frame = loop {
        let r = rt.block_on(scrape(&http, &good, origin));
        if let Ok(f) = &r {
            if f.zones
                .iter()
                .any(|z| z.kind == ZoneKind::Package && z.watts.is_some_and(|w| w > 0.0))
            {
                break f.clone();
            }
        }
        assert!(Instant::now() < deadline, "no frame over TLS: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(frame.sources(), ["rapl"]);
    let w = frame.zones[0].watts.unwrap();
    assert!((w - 40.0).abs() < 2.0, "{w} W");

    let wrong = options(port, Some(&ca), Some(("top", "guess")));
    let e = rt
        .block_on(scrape(&client(&wrong).unwrap(), &wrong, origin))
        .unwrap_err();
    assert!(e.contains("401"), "{e}");
    let anonymous = options(port, Some(&ca), None);
    let e = rt
        .block_on(scrape(&client(&anonymous).unwrap(), &anonymous, origin))
        .unwrap_err();
    assert!(e.contains("401"), "{e}");
    // The system's roots do not know a self-signed certificate.
    let untrusted = options(port, None, Some(("top", "s3cret")));
    let e = rt
        .block_on(scrape(&client(&untrusted).unwrap(), &untrusted, origin))
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // A CA file without a certificate is refused before any request.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let e = client(&options(port, Some(&bogus), None)).unwrap_err();
    assert!(
        e.contains("--tls.ca-file") && e.contains("bogus.pem"),
        "{e}"
    );
}

fn top(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("top")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn command_line_errors_name_the_flag() {
    for (args, code, want) in [
        (&["--url", "ftp://node/metrics"][..], 2, "--url"),
        (&["--url", "not a url"][..], 2, "--url"),
        (&["--refresh", "10ms"][..], 2, "--refresh"),
        (&["--refresh", "soon"][..], 2, "--refresh"),
        (&["--tls.ca-file", "/x.pem"][..], 2, "needs --url"),
        (&["--no-such-flag"][..], 2, "--no-such-flag"),
        (&["--monitor.interval=fast"][..], 2, "monitor.interval"),
        // Valid, but the output is not a terminal.
        (
            &["--url", "http://127.0.0.1:1/metrics"][..],
            1,
            "needs a terminal",
        ),
    ] {
        let out = top(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let help = top(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--url",
        "--refresh",
        "--tls.ca-file",
        "--basic-auth.username",
        "--host.sysfs",
        "--config.file",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}
