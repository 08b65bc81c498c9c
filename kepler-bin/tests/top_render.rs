//! `kepler top` drawn on ratatui's test backend (issue 18): every level under every sort,
//! and the degraded cases (estimated meter, no meter, a remote gone away, a tiny terminal,
//! an ASCII-only locale).

use kepler_bin::top::app::{App, Input};
use kepler_bin::top::draw::{draw, Glyphs};
use kepler_bin::top::model::{Frame, Level, Parents, SortKey, Workload, ZoneLine, KINDS};
use kepler_core::ZoneKind;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// Three workloads per level whose order differs under each sort:
/// watts: bravo, charlie, alpha; cpu: charlie, alpha, bravo; joules: alpha, charlie, bravo;
/// name: alpha, bravo, charlie.
const WORKLOADS: [(&str, f64, f64, f64); 3] = [
    // name, package watts, CPU share of one CPU, package joules
    ("alpha", 1.0, 0.20, 500.0),
    ("bravo", 12.0, 0.05, 100.0),
    ("charlie", 5.0, 0.90, 300.0),
];

fn order(sort: SortKey) -> [&'static str; 3] {
    match sort {
        SortKey::Watts => ["bravo", "charlie", "alpha"],
        SortKey::Cpu => ["charlie", "alpha", "bravo"],
        SortKey::Joules => ["alpha", "charlie", "bravo"],
        SortKey::Name => ["alpha", "bravo", "charlie"],
    }
}

fn per_kind(package: f64, dram: f64) -> [f64; KINDS] {
    let mut v = [0.0; KINDS];
    v[ZoneKind::Package.index()] = package;
    v[ZoneKind::Dram.index()] = dram;
    v
}

/// The frame at `t` seconds: CPU time grows at each workload's share.
fn frame(t: f64, source: &str, estimated: bool) -> Frame {
    let mut levels: [Vec<Workload>; 4] = Default::default();
    for (i, (name, watts, share, joules)) in WORKLOADS.iter().enumerate() {
        let group = |level: &str| format!("{level}-{name}");
        levels[Level::Process.index()].push(Workload {
            id: format!("{}", 101 * (i + 1)),
            name: name.to_string(),
            state: "running".into(),
            watts: per_kind(*watts, watts / 10.0),
            joules: per_kind(*joules, joules / 10.0),
            cpu_seconds: Some(10.0 + share * t),
            parents: Parents {
                container: Some(group("ctr")),
                pod: Some(group("pod")),
                vm: Some(group("vm")),
            },
        });
        for (level, prefix) in [
            (Level::Container, "ctr"),
            (Level::Pod, "pod"),
            (Level::Vm, "vm"),
        ] {
            levels[level.index()].push(Workload {
                id: group(prefix),
                name: name.to_string(),
                state: if i == 2 { "terminated" } else { "running" }.into(),
                watts: per_kind(*watts, watts / 10.0),
                joules: per_kind(*joules, joules / 10.0),
                ..Workload::default()
            });
        }
    }
    Frame {
        at_secs: t,
        node: "node-a".into(),
        zones: vec![
            ZoneLine {
                kind: ZoneKind::Package,
                path: "/sys/class/powercap/intel-rapl:0".into(),
                source: source.into(),
                estimated,
                watts: Some(40.0 + t % 100.0),
                joules: 40.0 * t,
            },
            ZoneLine {
                kind: ZoneKind::Dram,
                path: "/sys/class/powercap/intel-rapl:0:0".into(),
                source: source.into(),
                estimated,
                watts: Some(6.0),
                joules: 6.0 * t,
            },
        ],
        usage_ratio: Some(0.25),
        kinds: vec![ZoneKind::Package, ZoneKind::Dram],
        levels,
    }
}

fn app_with_two_frames() -> App {
    let mut app = App::new("local", 1.0);
    app.update(frame(100.0, "rapl", false));
    app.update(frame(101.0, "rapl", false));
    app
}

fn render(app: &mut App, w: u16, h: u16, g: &Glyphs) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, g)).unwrap();
    let buf = term.backend().buffer();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn line_of(screen: &[String], needle: &str) -> usize {
    screen
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", screen.join("\n")))
}

#[test]
fn every_level_lists_its_workloads_in_the_order_of_every_sort() {
    for level in Level::ALL {
        for sort in SortKey::ALL {
            let mut app = app_with_two_frames();
            app.key(Input::Char(char::from(b'1' + level.index() as u8)));
            app.key(Input::Char(match sort {
                SortKey::Watts => 'w',
                SortKey::Cpu => 'c',
                SortKey::Joules => 'j',
                SortKey::Name => 'n',
            }));
            assert_eq!((app.level, app.sort), (level, sort));
            let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
            let text = screen.join("\n");
            // The tab of the level, the sort and its arrow on the column heading.
            assert!(text.contains(level.title()), "{text}");
            assert!(text.contains(&format!("sort {} ▼", sort.label())), "{text}");
            assert!(text.contains(level.id_heading()), "{text}");
            let heading = match sort {
                SortKey::Watts => "WATTS▼",
                SortKey::Cpu => "CPU%▼",
                SortKey::Joules => "JOULES▼",
                SortKey::Name => "NAME▼",
            };
            assert!(text.contains(heading), "{heading} missing:\n{text}");
            // The rows, in the sort's order, below the table heading.
            let table_top = line_of(&screen, level.id_heading());
            let rows: Vec<usize> = order(sort)
                .iter()
                .map(|name| {
                    screen
                        .iter()
                        .enumerate()
                        .skip(table_top + 1)
                        .find(|(_, l)| l.contains(&format!(" {name} ")))
                        .map(|(i, _)| i)
                        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                })
                .collect();
            assert!(
                rows.windows(2).all(|w| w[0] < w[1]),
                "{level:?} by {sort:?}: want {:?}, lines {rows:?}\n{text}",
                order(sort)
            );
            // The numbers of one row: charlie draws 5 W of package, 90% of a CPU, 300 J.
            let charlie = &screen[rows[order(sort).iter().position(|n| *n == "charlie").unwrap()]];
            assert!(charlie.contains("5.00"), "{charlie}");
            assert!(charlie.contains("90.0"), "{charlie}");
            assert!(charlie.contains("300.0"), "{charlie}");
        }
    }
}

#[test]
fn header_names_the_source_and_zones_show_watts_joules_and_history() {
    let mut app = App::new("local", 1.0);
    for t in 0..10 {
        app.update(frame(100.0 + t as f64, "rapl", false));
    }
    let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
    let text = screen.join("\n");
    assert!(
        screen[0].contains("node node-a") && screen[0].contains("source rapl"),
        "{text}"
    );
    assert!(
        screen[0].contains("measured") && !text.contains("ESTIMATED"),
        "{text}"
    );
    let package = &screen[line_of(&screen, "package ")];
    assert!(
        package.contains("rapl") && package.contains("49.00"),
        "{package}"
    );
    assert!(package.contains("intel-rapl:0"), "{package}");
    // Package power rose every refresh: the sparkline climbs to a full block.
    assert!(package.contains('█') && package.contains('▇'), "{package}");
}

#[test]
fn an_estimate_says_so_in_the_header() {
    let mut app = App::new("local", 1.0);
    app.update(frame(1.0, "model", true));
    let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
    assert!(screen[0].contains("source model"), "{}", screen[0]);
    assert!(screen[0].contains("ESTIMATED"), "{}", screen[0]);
    assert!(screen.iter().any(|l| l.contains("model*")));
}

#[test]
fn a_meterless_node_still_lists_workloads() {
    let mut app = App::new("local", 1.0);
    let mut f = frame(1.0, "rapl", false);
    f.zones.clear();
    f.kinds.clear();
    app.update(f);
    let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
    let text = screen.join("\n");
    assert!(screen[0].contains("NO POWER METER"), "{text}");
    assert!(text.contains("alpha") && text.contains("bravo"), "{text}");
}

#[test]
fn a_remote_gone_away_is_shown_with_the_stale_numbers_and_cleared_on_return() {
    let mut app = App::new("http://node:28282/metrics", 1.0);
    app.update(frame(1.0, "rapl", false));
    app.fail("cannot connect: Connection refused");
    app.fail("cannot connect: Connection refused");
    let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
    assert!(
        screen[1].contains("2 failed, retrying; numbers below are stale: cannot connect"),
        "{}",
        screen[1]
    );
    assert!(screen[1].contains("stale"), "{}", screen[1]);
    assert!(screen.join("\n").contains("bravo"));
    app.update(frame(2.0, "rapl", false));
    let text = render(&mut app, 100, 20, &Glyphs::UNICODE).join("\n");
    assert!(!text.contains("retrying"), "{text}");
}

#[test]
fn a_tiny_terminal_gets_a_notice_and_a_short_one_drops_zones_first() {
    let mut app = app_with_two_frames();
    let screen = render(&mut app, 20, 4, &Glyphs::UNICODE);
    assert!(screen.join("").contains("too small"), "{screen:?}");
    // 8 lines: header, tabs, table; no room for zones.
    let screen = render(&mut app, 60, 8, &Glyphs::UNICODE);
    let text = screen.join("\n");
    assert!(
        text.contains("bravo") && !text.contains("HISTORY"),
        "{text}"
    );
    // Every terminal size from tiny up draws without panicking.
    for w in [1, 10, 31, 32, 40, 80] {
        for h in [1, 3, 5, 6, 7, 9, 12] {
            render(&mut app, w, h, &Glyphs::UNICODE);
        }
    }
}

#[test]
fn ascii_mode_writes_only_ascii() {
    let mut app = App::new("local", 1.0);
    let mut f = frame(1.0, "rapl", false);
    f.levels[0][0].name = "naïve\u{1b}[31m".into();
    app.update(f.clone());
    f.at_secs = 2.0;
    app.update(f);
    let g = Glyphs::from_locale(|v| (v == "LANG").then(|| "C".to_string()));
    let screen = render(&mut app, 100, 20, &g);
    let text = screen.join("\n");
    assert!(text.is_ascii(), "{text}");
    assert!(
        text.contains("sort watts v") && text.contains("na?ve?[31m"),
        "{text}"
    );
    // A UTF-8 locale draws blocks, and an escape sequence in a name is never written raw.
    let g = Glyphs::from_locale(|v| (v == "LC_ALL").then(|| "en_US.UTF-8".to_string()));
    let text = render(&mut app, 100, 20, &g).join("\n");
    assert!(
        text.contains("naïve?[31m") && !text.contains('\u{1b}'),
        "{text}"
    );
}

#[test]
fn filter_pause_and_zone_keys() {
    let mut app = app_with_two_frames();
    for c in "/CHAR".chars() {
        app.key(Input::Char(c));
    }
    app.key(Input::Enter);
    let text = render(&mut app, 100, 20, &Glyphs::UNICODE).join("\n");
    assert!(
        text.contains("filter /CHAR") && text.contains("charlie"),
        "{text}"
    );
    assert!(!text.contains("alpha") && !text.contains("bravo"), "{text}");
    app.key(Input::Char('/'));
    app.key(Input::Esc);
    assert!(app.filter.is_empty() && !app.editing_filter);

    // Paused: a new frame waits; unpaused: it shows.
    app.key(Input::Char(' '));
    let mut f = frame(102.0, "rapl", false);
    f.levels[0][0].name = "alpha-renamed".into();
    app.update(f);
    let text = render(&mut app, 100, 20, &Glyphs::UNICODE).join("\n");
    assert!(
        text.contains("PAUSED") && !text.contains("alpha-renamed"),
        "{text}"
    );
    app.key(Input::Char(' '));
    let text = render(&mut app, 100, 20, &Glyphs::UNICODE).join("\n");
    assert!(
        !text.contains("PAUSED") && text.contains("alpha-renamed"),
        "{text}"
    );

    // z: the workload columns show dram, a tenth of package.
    app.key(Input::Char('z'));
    let screen = render(&mut app, 100, 20, &Glyphs::UNICODE);
    assert!(screen.join("\n").contains("zone dram"));
    let bravo = line_of(&screen, " bravo ");
    assert!(screen[bravo].contains("1.20"), "{}", screen[bravo]);
    assert_eq!(
        app.key(Input::Char('q')),
        kepler_bin::top::app::Action::Quit
    );
}
