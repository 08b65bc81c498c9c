//! Drawing: the [`App`] onto a ratatui frame. Layout, top to bottom: a header (node, where
//! the numbers come from, measured or ESTIMATED, paused or a remote's trouble), the node's
//! zones with a power sparkline each, the level tabs with sort, zone and filter, the
//! workload table, and a line of keys. Rows that do not fit are dropped from the bottom
//! (zones first, then the key line); below [`MIN_WIDTH`] x [`MIN_HEIGHT`] only a notice.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame as Canvas;

use super::app::{App, Row};
use super::model::{Level, SortKey};

/// The narrowest terminal the view draws in.
pub const MIN_WIDTH: u16 = 32;
/// The shortest terminal the view draws in.
pub const MIN_HEIGHT: u16 = 6;

/// The symbols the view draws with: Unicode, or plain ASCII where the locale is not UTF-8.
#[derive(Debug, Clone, Copy)]
pub struct Glyphs {
    /// Sparkline levels, lowest first.
    pub bars: [char; 8],
    /// Marks the sort column (largest first).
    pub down: &'static str,
    /// Marks the sort column (reversed).
    pub up: &'static str,
    /// Between header items.
    pub sep: &'static str,
    /// True when only ASCII may be written.
    pub ascii: bool,
}

impl Glyphs {
    /// Block elements and arrows.
    pub const UNICODE: Glyphs = Glyphs {
        bars: ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'],
        down: "▼",
        up: "▲",
        sep: " · ",
        ascii: false,
    };
    /// For terminals that cannot show UTF-8.
    pub const ASCII: Glyphs = Glyphs {
        bars: ['_', '.', ',', '-', '~', '=', '+', '#'],
        down: "v",
        up: "^",
        sep: " | ",
        ascii: true,
    };

    /// UTF-8 unless the locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`, as setlocale reads
    /// them) names another character set; an unset locale is "C", which is ASCII.
    pub fn from_locale(var: impl Fn(&str) -> Option<String>) -> Glyphs {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .into_iter()
            .filter_map(|v| var(v).filter(|s| !s.is_empty()))
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if locale.contains("utf-8") || locale.contains("utf8") {
            Glyphs::UNICODE
        } else {
            Glyphs::ASCII
        }
    }

    /// `s` made safe to print: control characters (a process may name itself with escape
    /// sequences) become `?`, and so does anything outside ASCII in ASCII mode.
    pub fn clean(&self, s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_control() || (self.ascii && !c.is_ascii()) {
                    '?'
                } else {
                    c
                }
            })
            .collect()
    }
}

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const HEAD: Style = Style::new().add_modifier(Modifier::REVERSED);

/// Draws the whole view.
pub fn draw(canvas: &mut Canvas<'_>, app: &mut App, g: &Glyphs) {
    let area = canvas.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small ({}x{}); need {MIN_WIDTH}x{MIN_HEIGHT}. q quits",
            area.width, area.height
        );
        canvas.render_widget(
            Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let zones = app.frame().map_or(0, |f| f.zones.len()).max(1) as u16;
    // A remote's trouble gets a line of its own under the header: it is what matters most.
    let head = 1 + u16::from(app.trouble.is_some());
    // Header, tabs and at least three table lines are kept; then the key line, then zones.
    let spare = area.height.saturating_sub(head + 1 + 4);
    let footer = u16::from(spare >= 1);
    let zone_lines = if spare > footer + 2 {
        (zones + 1).min(spare - footer - 2).min(area.height / 2)
    } else {
        0
    };
    let [header, zone_area, tabs, table, keys] = Layout::vertical([
        Constraint::Length(head),
        Constraint::Length(zone_lines),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(footer),
    ])
    .areas(area);
    draw_header(canvas, header, app, g);
    if zone_lines > 0 {
        draw_zones(canvas, zone_area, app, g);
    }
    draw_tabs(canvas, tabs, app, g);
    draw_table(canvas, table, app, g);
    if footer > 0 {
        draw_keys(canvas, keys, app, g);
    }
}

fn draw_header(canvas: &mut Canvas<'_>, area: Rect, app: &App, g: &Glyphs) {
    let mut spans = vec![Span::styled("kepler top", BOLD)];
    let mut push = |s: Span<'static>| {
        spans.push(Span::raw(g.sep));
        spans.push(s);
    };
    match app.frame() {
        Some(f) => {
            if !f.node.is_empty() {
                push(Span::raw(format!("node {}", g.clean(&f.node))));
            }
            push(Span::raw(g.clean(&app.mode)));
            let sources = f.sources();
            if sources.is_empty() {
                push(Span::styled(
                    "NO POWER METER: CPU only",
                    BOLD.fg(Color::Yellow),
                ));
            } else {
                push(Span::raw(format!("source {}", g.clean(&sources.join("+")))));
                if f.estimated() {
                    push(Span::styled(
                        "ESTIMATED (not measured)",
                        BOLD.fg(Color::Yellow),
                    ));
                } else {
                    push(Span::raw("measured"));
                }
            }
            if let Some(u) = f.usage_ratio {
                push(Span::raw(format!("cpu {:.0}%", u * 100.0)));
            }
        }
        None => push(Span::raw(format!(
            "{}: waiting for the first reading",
            g.clean(&app.mode)
        ))),
    }
    push(Span::raw(format!(
        "every {}s",
        trim_float(app.refresh_secs)
    )));
    if app.paused {
        push(Span::styled("PAUSED", BOLD.fg(Color::Cyan)));
    }
    let mut lines = vec![Line::from(spans)];
    if let Some((why, n)) = &app.trouble {
        // The reason goes last: it is the long part, and the line may be cut.
        let stale = if app.frame().is_some() {
            "; numbers below are stale"
        } else {
            ""
        };
        lines.push(Line::styled(
            format!("{n} failed, retrying{stale}: {}", g.clean(why)),
            BOLD.fg(Color::Red),
        ));
    }
    canvas.render_widget(Paragraph::new(lines), area);
}

fn draw_zones(canvas: &mut Canvas<'_>, area: Rect, app: &App, g: &Glyphs) {
    let Some(frame) = app.frame() else { return };
    // The columns before it and their spacing (see `widths`).
    let spark_width = area.width.saturating_sub(8 + 8 + 9 + 10 + 14 + 5) as usize;
    let rows: Vec<TableRow> = if frame.zones.is_empty() {
        vec![TableRow::new(vec![Cell::from(
            "no power meter found: workloads are listed by CPU use",
        )])]
    } else {
        frame
            .zones
            .iter()
            .map(|z| {
                let spark = app
                    .history(z.kind, &z.path)
                    .map(|h| sparkline(h.iter().copied(), spark_width, g))
                    .unwrap_or_default();
                let source = if z.estimated {
                    format!("{}*", z.source)
                } else {
                    z.source.clone()
                };
                TableRow::new(vec![
                    Cell::from(z.kind.label()),
                    Cell::from(g.clean(&source)),
                    Cell::from(z.watts.map_or("-".into(), |w| format!("{w:.2}"))),
                    Cell::from(human(z.joules)),
                    Cell::from(g.clean(&short_path(&z.path))),
                    Cell::from(spark),
                ])
            })
            .collect()
    };
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Min(0),
    ];
    let header =
        TableRow::new(["ZONE", "SOURCE", "WATTS", "JOULES", "PATH", "HISTORY"]).style(HEAD);
    canvas.render_widget(Table::new(rows, widths).header(header), area);
}

fn draw_tabs(canvas: &mut Canvas<'_>, area: Rect, app: &App, g: &Glyphs) {
    let mut spans = Vec::new();
    for (i, level) in Level::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, level.title());
        spans.push(if *level == app.level {
            Span::styled(text, HEAD.add_modifier(Modifier::BOLD))
        } else {
            Span::raw(text)
        });
    }
    let arrow = if app.reverse { g.up } else { g.down };
    spans.push(Span::raw(format!(
        "{}sort {} {arrow}",
        g.sep,
        app.sort.label()
    )));
    if let Some(z) = app.workload_zone() {
        spans.push(Span::raw(format!("{}zone {}", g.sep, z.label())));
    }
    if app.editing_filter || !app.filter.is_empty() {
        let cursor = if app.editing_filter { "_" } else { "" };
        spans.push(Span::styled(
            format!("{}filter /{}{cursor}", g.sep, g.clean(&app.filter)),
            BOLD,
        ));
    }
    canvas.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_table(canvas: &mut Canvas<'_>, area: Rect, app: &mut App, g: &Glyphs) {
    let rows = app.rows();
    let visible = area.height.saturating_sub(1) as usize;
    app.page = visible;
    app.scroll = app.scroll.min(rows.len().saturating_sub(visible));
    let arrow = if app.reverse { g.up } else { g.down };
    let mark = |key: SortKey, name: &str| {
        if app.sort == key {
            format!("{name}{arrow}")
        } else {
            name.to_string()
        }
    };
    let id_width: u16 = if app.level == Level::Process { 8 } else { 14 };
    // Numbers first, the name last, where a long one can use the rest of the line.
    let header = TableRow::new(vec![
        Cell::from(app.level.id_heading()),
        Cell::from(format!("{:>8}", mark(SortKey::Watts, "WATTS"))),
        Cell::from(format!("{:>6}", mark(SortKey::Cpu, "CPU%"))),
        Cell::from(format!("{:>9}", mark(SortKey::Joules, "JOULES"))),
        Cell::from("STATE"),
        Cell::from(mark(SortKey::Name, "NAME")),
    ])
    .style(HEAD);
    let body: Vec<TableRow> = if rows.is_empty() {
        let why = match (app.frame(), app.filter.is_empty()) {
            (None, _) => "waiting for data".to_string(),
            (Some(_), false) => format!("nothing matches /{}", g.clean(&app.filter)),
            (Some(_), true) => format!("no {} seen", app.level.title().to_lowercase()),
        };
        vec![TableRow::new(vec![
            Cell::from(""),
            Cell::from(""),
            Cell::from(""),
            Cell::from(""),
            Cell::from(""),
            Cell::from(why),
        ])]
    } else {
        rows.iter()
            .skip(app.scroll)
            .take(visible)
            .map(|r| table_row(r, id_width, g))
            .collect()
    };
    let widths = [
        Constraint::Length(id_width),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Min(8),
    ];
    canvas.render_widget(Table::new(body, widths).header(header), area);
}

fn table_row(r: &Row, id_width: u16, g: &Glyphs) -> TableRow<'static> {
    let id: String = g.clean(&r.id).chars().take(id_width as usize).collect();
    let style = if r.state == "running" {
        Style::new()
    } else {
        Style::new().add_modifier(Modifier::DIM)
    };
    TableRow::new(vec![
        Cell::from(id),
        Cell::from(format!("{:>8.2}", r.watts)),
        Cell::from(
            r.cpu_percent
                .map_or(format!("{:>6}", "-"), |c| format!("{c:>6.1}")),
        ),
        Cell::from(format!("{:>9}", human(r.joules))),
        Cell::from(g.clean(&r.state)),
        Cell::from(g.clean(&r.name)),
    ])
    .style(style)
}

fn draw_keys(canvas: &mut Canvas<'_>, area: Rect, app: &App, g: &Glyphs) {
    let text = if app.editing_filter {
        "type to filter by name or id  enter keep  esc clear".to_string()
    } else {
        let mut t =
            "q quit  tab/1-4 level  s/w/c/j/n sort  r reverse  z zone  / filter  space pause"
                .to_string();
        if let Some(w) = app.warnings.last() {
            t = format!(
                "{} warning(s), latest: {}{}{t}",
                app.warnings.len(),
                g.clean(w),
                g.sep
            );
        }
        t
    };
    canvas.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::DIM)),
        area,
    );
}

/// A text sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline(
    values: impl DoubleEndedIterator<Item = u64> + ExactSizeIterator,
    width: usize,
    g: &Glyphs,
) -> String {
    let n = values.len();
    let tail: Vec<u64> = values.skip(n.saturating_sub(width)).collect();
    let max = tail.iter().copied().max().unwrap_or(0);
    tail.iter()
        .map(|&v| {
            if max == 0 {
                g.bars[0]
            } else {
                g.bars[((v as u128 * 7 + max as u128 / 2) / max as u128) as usize]
            }
        })
        .collect()
}

/// Joules in at most 7 characters: `812.3`, `12.35k`, `4.57M`.
pub fn human(j: f64) -> String {
    let (v, unit) = match j.abs() {
        a if a >= 1e9 => (j / 1e9, "G"),
        a if a >= 1e6 => (j / 1e6, "M"),
        a if a >= 1e4 => (j / 1e3, "k"),
        _ => (j, ""),
    };
    format!("{v:.1}{unit}")
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The end of a long path (a sysfs path's last component says which zone it is).
fn short_path(p: &str) -> String {
    let last = p.rsplit('/').find(|s| !s.is_empty()).unwrap_or(p);
    last.to_string()
}
