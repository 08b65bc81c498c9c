//! The state of `kepler top` between refreshes, and what each key does to it: level, sort,
//! filter, pause, the zone the workload columns show, scrolling. No terminal here: keys come
//! in as [`Input`] values and the table comes out as [`Row`]s, so every rule is unit-tested.

use std::collections::{HashMap, VecDeque};

use kepler_core::ZoneKind;

use super::model::{Frame, Level, SortKey, Workload};

/// How many refreshes a zone's sparkline remembers.
pub const HISTORY: usize = 120;

/// A key press, as the view understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Tab: next level.
    Tab,
    /// One row up.
    Up,
    /// One row down.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// Back to the top row.
    Home,
    /// Ctrl-C: quit from any state.
    Interrupt,
}

/// What the event loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep going (and redraw).
    Continue,
    /// Leave.
    Quit,
}

/// One line of the workload table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Pid or group id.
    pub id: String,
    /// Command or group name.
    pub name: String,
    /// Watts of the shown zone over the latest interval.
    pub watts: f64,
    /// CPU use over the latest interval, percent of one CPU; `None` until two refreshes.
    pub cpu_percent: Option<f64>,
    /// Joules of the shown zone since first seen.
    pub joules: f64,
    /// `running` or `terminated`.
    pub state: String,
}

/// The view's state.
#[derive(Debug)]
pub struct App {
    /// Where the numbers come from: `local` or the remote URL.
    pub mode: String,
    /// Seconds between refreshes, for the header.
    pub refresh_secs: f64,
    /// The table's level.
    pub level: Level,
    /// The table's sort column.
    pub sort: SortKey,
    /// Smallest first instead of largest first (names: Z to A).
    pub reverse: bool,
    /// The zone the workload columns show; the frame's first kind when unset or absent.
    pub zone: Option<ZoneKind>,
    /// Case-insensitive substring of the name or id that rows must contain.
    pub filter: String,
    /// True while the filter is being typed.
    pub editing_filter: bool,
    /// True while refreshes are held back (the numbers stay as they were).
    pub paused: bool,
    /// First row shown.
    pub scroll: usize,
    /// Rows per page, set by the drawing code.
    pub page: usize,
    /// The latest trouble getting numbers (a remote gone away), with consecutive failures.
    pub trouble: Option<(String, u32)>,
    /// Warnings logged by the runtime (missing privileges, fallbacks), latest last.
    pub warnings: Vec<String>,
    frame: Option<Frame>,
    held: Option<Frame>,
    cpu: [HashMap<String, f64>; 4],
    prev_cpu: HashMap<String, f64>,
    prev_at: Option<f64>,
    history: HashMap<String, VecDeque<u64>>,
}

impl App {
    /// An empty view for `mode`, refreshed every `refresh_secs`.
    pub fn new(mode: impl Into<String>, refresh_secs: f64) -> App {
        App {
            mode: mode.into(),
            refresh_secs,
            level: Level::Process,
            sort: SortKey::Watts,
            reverse: false,
            zone: None,
            filter: String::new(),
            editing_filter: false,
            paused: false,
            scroll: 0,
            page: 10,
            trouble: None,
            warnings: Vec::new(),
            frame: None,
            held: None,
            cpu: Default::default(),
            prev_cpu: HashMap::new(),
            prev_at: None,
            history: HashMap::new(),
        }
    }

    /// The frame on screen.
    pub fn frame(&self) -> Option<&Frame> {
        self.frame.as_ref()
    }

    /// A new frame arrived: shown now, or held while paused (the latest one wins).
    pub fn update(&mut self, frame: Frame) {
        self.trouble = None;
        if self.paused {
            self.held = Some(frame);
        } else {
            self.show(frame);
        }
    }

    /// Getting numbers failed (`message` says why); the last frame stays, marked stale.
    pub fn fail(&mut self, message: impl Into<String>) {
        let n = self.trouble.as_ref().map_or(0, |(_, n)| *n);
        self.trouble = Some((message.into(), n + 1));
    }

    fn show(&mut self, frame: Frame) {
        self.rates(&frame);
        for z in &frame.zones {
            let h = self.history.entry(zone_key(z.kind, &z.path)).or_default();
            // A zone without watts yet (its first reading) adds nothing to its history.
            let Some(w) = z.watts else { continue };
            if h.len() == HISTORY {
                h.pop_front();
            }
            // Milliwatts: the sparkline wants integers.
            h.push_back((w.max(0.0) * 1000.0) as u64);
        }
        self.history
            .retain(|k, _| frame.zones.iter().any(|z| zone_key(z.kind, &z.path) == *k));
        self.frame = Some(frame);
    }

    /// CPU% per process from the change in its CPU time, and per group as the sum of its
    /// processes'. A counter that went backwards (pid reused) has no rate this time.
    fn rates(&mut self, frame: &Frame) {
        if self.prev_at == Some(frame.at_secs) {
            // The same tick again (a remote scraped faster than it ticks): same rates.
            return;
        }
        for m in &mut self.cpu {
            m.clear();
        }
        let dt = self.prev_at.map(|p| frame.at_secs - p).filter(|d| *d > 0.0);
        let mut next = HashMap::with_capacity(frame.workloads(Level::Process).len());
        for p in frame.workloads(Level::Process) {
            let Some(cpu) = p.cpu_seconds else { continue };
            next.insert(p.id.clone(), cpu);
            let (Some(dt), Some(prev)) = (dt, self.prev_cpu.get(&p.id)) else {
                continue;
            };
            if cpu < *prev {
                continue;
            }
            let pct = (cpu - prev) / dt * 100.0;
            self.cpu[Level::Process.index()].insert(p.id.clone(), pct);
            for level in [Level::Container, Level::Pod, Level::Vm] {
                if let Some(g) = p.parents.at(level) {
                    *self.cpu[level.index()].entry(g.to_string()).or_default() += pct;
                }
            }
        }
        // Groups with processes but no CPU this interval show 0%, not "unknown".
        if dt.is_some() {
            for level in [Level::Container, Level::Pod, Level::Vm] {
                for g in frame.workloads(level) {
                    self.cpu[level.index()].entry(g.id.clone()).or_insert(0.0);
                }
            }
        }
        self.prev_cpu = next;
        self.prev_at = Some(frame.at_secs);
    }

    /// A zone's power history in milliwatts, oldest first.
    pub fn history(&self, kind: ZoneKind, path: &str) -> Option<&VecDeque<u64>> {
        self.history.get(&zone_key(kind, path))
    }

    /// The zone the workload columns show.
    pub fn workload_zone(&self) -> Option<ZoneKind> {
        let kinds = &self.frame.as_ref()?.kinds;
        match self.zone {
            Some(z) if kinds.contains(&z) => Some(z),
            _ => kinds.first().copied(),
        }
    }

    /// The table: the level's workloads that match the filter, sorted.
    pub fn rows(&self) -> Vec<Row> {
        let Some(frame) = &self.frame else {
            return Vec::new();
        };
        let zone = self.workload_zone();
        let needle = self.filter.to_lowercase();
        let cpu = &self.cpu[self.level.index()];
        let mut rows: Vec<Row> = frame
            .workloads(self.level)
            .iter()
            .filter(|w| needle.is_empty() || matches(w, &needle))
            .map(|w| Row {
                id: w.id.clone(),
                name: w.name.clone(),
                watts: zone.map_or(0.0, |z| w.watts[z.index()]),
                cpu_percent: cpu.get(&w.id).copied(),
                joules: zone.map_or(0.0, |z| w.joules[z.index()]),
                state: w.state.clone(),
            })
            .collect();
        let by_name = |a: &Row, b: &Row| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id));
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        rows.sort_by(|a, b| {
            let order = match self.sort {
                SortKey::Watts => desc(a.watts, b.watts),
                SortKey::Cpu => desc(a.cpu_percent.unwrap_or(-1.0), b.cpu_percent.unwrap_or(-1.0)),
                SortKey::Joules => desc(a.joules, b.joules),
                SortKey::Name => std::cmp::Ordering::Equal,
            };
            let order = if self.reverse { order.reverse() } else { order };
            let names = if self.reverse && self.sort == SortKey::Name {
                by_name(b, a)
            } else {
                by_name(a, b)
            };
            order.then_with(|| names)
        });
        rows
    }

    /// Applies a key.
    pub fn key(&mut self, input: Input) -> Action {
        if input == Input::Interrupt {
            return Action::Quit;
        }
        if self.editing_filter {
            match input {
                Input::Char(c) => self.filter.push(c),
                Input::Backspace => {
                    self.filter.pop();
                }
                Input::Enter => self.editing_filter = false,
                Input::Esc => {
                    self.filter.clear();
                    self.editing_filter = false;
                }
                _ => {}
            }
            self.scroll = 0;
            return Action::Continue;
        }
        match input {
            Input::Char('q') | Input::Esc => return Action::Quit,
            Input::Tab | Input::Char('l') => self.set_level(self.level.next()),
            Input::Char(c @ '1'..='4') => self.set_level(Level::ALL[c as usize - '1' as usize]),
            Input::Char('s') => self.sort = self.sort.next(),
            Input::Char('w') => self.sort = SortKey::Watts,
            Input::Char('c') => self.sort = SortKey::Cpu,
            Input::Char('j') => self.sort = SortKey::Joules,
            Input::Char('n') => self.sort = SortKey::Name,
            Input::Char('r') => self.reverse = !self.reverse,
            Input::Char('z') => self.next_zone(),
            Input::Char('/') => {
                self.editing_filter = true;
            }
            Input::Char(' ') | Input::Char('p') => {
                self.paused = !self.paused;
                if !self.paused {
                    if let Some(f) = self.held.take() {
                        self.show(f);
                    }
                }
            }
            Input::Up => self.scroll = self.scroll.saturating_sub(1),
            Input::Down => self.scroll = self.scroll.saturating_add(1),
            Input::PageUp => self.scroll = self.scroll.saturating_sub(self.page.max(1)),
            Input::PageDown => self.scroll = self.scroll.saturating_add(self.page.max(1)),
            Input::Home => self.scroll = 0,
            _ => {}
        }
        Action::Continue
    }

    fn set_level(&mut self, level: Level) {
        self.level = level;
        self.scroll = 0;
    }

    fn next_zone(&mut self) {
        let Some(frame) = &self.frame else { return };
        if frame.kinds.is_empty() {
            return;
        }
        let current = self.workload_zone();
        let i = frame.kinds.iter().position(|k| Some(*k) == current);
        let next = i.map_or(0, |i| (i + 1) % frame.kinds.len());
        self.zone = Some(frame.kinds[next]);
    }
}

fn zone_key(kind: ZoneKind, path: &str) -> String {
    format!("{}\u{0}{path}", kind.label())
}

fn matches(w: &Workload, needle: &str) -> bool {
    w.name.to_lowercase().contains(needle) || w.id.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{Parents, Workload};

    fn process(pid: &str, name: &str, cpu: f64, container: Option<&str>) -> Workload {
        Workload {
            id: pid.into(),
            name: name.into(),
            state: "running".into(),
            cpu_seconds: Some(cpu),
            parents: Parents {
                container: container.map(Into::into),
                ..Parents::default()
            },
            ..Workload::default()
        }
    }

    fn frame(at: f64, procs: Vec<Workload>, containers: &[&str]) -> Frame {
        let mut f = Frame {
            at_secs: at,
            ..Frame::default()
        };
        f.levels[Level::Process.index()] = procs;
        f.levels[Level::Container.index()] = containers
            .iter()
            .map(|id| Workload {
                id: id.to_string(),
                name: id.to_string(),
                ..Workload::default()
            })
            .collect();
        f
    }

    fn cpu(app: &App, id: &str) -> Option<f64> {
        app.rows()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
            .cpu_percent
    }

    #[test]
    fn cpu_rates_roll_up_and_survive_a_repeated_tick() {
        let mut app = App::new("t", 1.0);
        let procs = |a: f64, b: f64| {
            vec![
                process("1", "a", a, Some("c1")),
                process("2", "b", b, Some("c1")),
                process("3", "idle", 5.0, None),
            ]
        };
        app.update(frame(10.0, procs(1.0, 2.0), &["c1", "c2"]));
        assert_eq!(cpu(&app, "1"), None, "no rate from one frame");
        app.update(frame(12.0, procs(2.0, 2.5), &["c1", "c2"]));
        assert_eq!(cpu(&app, "1"), Some(50.0));
        assert_eq!(cpu(&app, "2"), Some(25.0));
        assert_eq!(cpu(&app, "3"), Some(0.0));
        app.key(Input::Char('2'));
        assert_eq!(cpu(&app, "c1"), Some(75.0));
        assert_eq!(
            cpu(&app, "c2"),
            Some(0.0),
            "a group without CPU shows 0, not unknown"
        );
        // The same exporter tick scraped again: the rates stay.
        app.update(frame(12.0, procs(2.0, 2.5), &["c1", "c2"]));
        assert_eq!(cpu(&app, "c1"), Some(75.0));
        // Pid 1 reused by a new process (its CPU time went back): no rate this time.
        app.key(Input::Char('1'));
        app.update(frame(13.0, procs(0.1, 3.0), &["c1"]));
        assert_eq!((cpu(&app, "1"), cpu(&app, "2")), (None, Some(50.0)));
    }

    #[test]
    fn filter_matches_name_or_id_and_name_sort_reverses() {
        let mut app = App::new("t", 1.0);
        let procs = vec![
            process("10", "Bash", 0.0, None),
            process("42", "zsh", 0.0, None),
            process("7", "ash", 0.0, None),
        ];
        app.update(frame(1.0, procs, &[]));
        app.key(Input::Char('n'));
        let names = |app: &App| app.rows().into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(&app), ["Bash", "ash", "zsh"]);
        app.key(Input::Char('r'));
        assert_eq!(names(&app), ["zsh", "ash", "Bash"]);
        for c in "/ash".chars() {
            app.key(Input::Char(c));
        }
        assert_eq!(names(&app), ["ash", "Bash"], "case-insensitive");
        app.key(Input::Backspace);
        app.key(Input::Backspace);
        app.key(Input::Backspace);
        app.key(Input::Char('4'));
        app.key(Input::Char('2'));
        assert!(
            app.editing_filter,
            "keys go to the filter while it is typed"
        );
        assert_eq!(names(&app), ["zsh"], "matches the id 42");
        app.key(Input::Enter);
        app.key(Input::Char('s'));
        assert_eq!(app.sort, SortKey::Watts, "s cycles name -> watts");
        app.key(Input::Esc);
        assert!(
            app.filter == "42",
            "Esc outside the filter quits, it does not clear"
        );
    }

    #[test]
    fn scrolling_stays_in_range() {
        let mut app = App::new("t", 1.0);
        app.page = 5;
        app.key(Input::PageDown);
        app.key(Input::Down);
        assert_eq!(app.scroll, 6);
        app.key(Input::PageUp);
        app.key(Input::PageUp);
        assert_eq!(app.scroll, 0);
        app.key(Input::Down);
        app.key(Input::Tab);
        assert_eq!((app.level, app.scroll), (Level::Container, 0));
    }
}
