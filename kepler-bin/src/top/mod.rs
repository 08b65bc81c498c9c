//! `kepler top`: a full-screen live view of the node's power and the processes, containers,
//! pods and VMs drawing it (issue 18).
//!
//! Two ways to get numbers, one view:
//! - **local** (default): the runtime in-process, built from the exporter's own flags and
//!   config file ([`local`]), one tick per refresh: the same sources, engine and rules as
//!   the exporter. It needs the exporter's privileges (RAPL `energy_uj` is root-only).
//! - **remote** (`--url`): scrapes a running exporter's `/metrics` ([`remote`]) and reads
//!   the exposition back ([`exposition`]), over TLS and with basic auth where asked.
//!
//! Both produce a [`model::Frame`]; [`app::App`] keeps the view's state (level, sort,
//! filter, pause, CPU rates, sparkline history) and [`draw`] puts it on the screen. Only
//! this file touches the terminal.

pub mod app;
pub mod draw;
pub mod exposition;
pub mod local;
pub mod model;
pub mod remote;

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

use crate::config::{parse_duration, Config, Flags};
use app::{Action, App, Input};
use draw::Glyphs;
use model::Frame;

const ABOUT: &str = "kepler top: the node's power by zone and the processes, containers, pods \
and VMs drawing it, live.\n\n\
Local mode (no --url) runs the exporter's sources and engine in this process and takes the \
exporter's flags and --config.file; it needs the exporter's privileges. With --url it reads \
a running exporter's /metrics instead.\n\n\
Keys: q quit, tab or 1-4 level, s cycle sort (w watts, c cpu, j joules, n name), r reverse, \
z zone, / filter by name, space pause, arrows and page keys scroll.";

/// Everything `kepler top` adds to the exporter's flags.
fn command() -> clap::Command {
    Flags::command()
        .name("kepler top")
        .bin_name("kepler top")
        .about(ABOUT)
        .arg(
            Arg::new("url")
                .long("url")
                .value_name("URL")
                .help("Remote mode: a kepler exporter's metrics URL, e.g. http://node:28282/metrics."),
        )
        .arg(
            Arg::new("refresh")
                .long("refresh")
                .value_name("DURATION")
                .default_value("1s")
                .help("Time between refreshes (local: one monitor tick each; remote: one scrape each)."),
        )
        .arg(
            Arg::new("tls.ca-file")
                .long("tls.ca-file")
                .value_name("PATH")
                .help("Remote mode: PEM certificates to trust instead of the system's."),
        )
        .arg(
            Arg::new("basic-auth.username")
                .long("basic-auth.username")
                .value_name("USER")
                .help("Remote mode: basic auth user; the password comes from \
                       --basic-auth.password-file or $KEPLER_TOP_PASSWORD."),
        )
        .arg(
            Arg::new("basic-auth.password-file")
                .long("basic-auth.password-file")
                .value_name("PATH")
                .help("Remote mode: a file holding the basic auth password."),
        )
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .default_value("5s")
                .help("Remote mode: longest a scrape may take."),
        )
        .arg(
            Arg::new("ascii")
                .long("ascii")
                .action(ArgAction::SetTrue)
                .help("Draw with ASCII only (the default where the locale is not UTF-8)."),
        )
}

/// What the user asked for.
enum Mode {
    Local(Box<Config>),
    Remote(remote::RemoteOptions),
}

fn bad(flag: &str, message: impl std::fmt::Display) -> String {
    format!("invalid configuration: {flag}: {message}")
}

fn duration_arg(m: &ArgMatches, id: &str) -> Result<Duration, String> {
    let text = m.get_one::<String>(id).map(String::as_str).unwrap_or("1s");
    let d = parse_duration(text).map_err(|e| bad(&format!("--{id}"), e))?;
    if d < Duration::from_millis(100) {
        return Err(bad(&format!("--{id}"), "must be at least 100ms"));
    }
    Ok(d)
}

fn mode(m: &ArgMatches, refresh: Duration) -> Result<Mode, String> {
    let flags = Flags::from_arg_matches(m).map_err(|e| e.to_string())?;
    let Some(url) = m.get_one::<String>("url") else {
        for remote_only in [
            "tls.ca-file",
            "basic-auth.username",
            "basic-auth.password-file",
        ] {
            if m.contains_id(remote_only)
                && m.value_source(remote_only) == Some(clap::parser::ValueSource::CommandLine)
            {
                return Err(bad(&format!("--{remote_only}"), "needs --url"));
            }
        }
        return local_config(&flags).map(|c| Mode::Local(Box::new(c)));
    };
    let url = reqwest::Url::parse(url).map_err(|e| bad("--url", format!("{url:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "--url",
            format!("{url}: only http and https are supported"),
        ));
    }
    let basic_auth = match m.get_one::<String>("basic-auth.username") {
        None => None,
        Some(user) => {
            let password = match m.get_one::<String>("basic-auth.password-file") {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        bad(
                            "--basic-auth.password-file",
                            format!("cannot read {path}: {e}"),
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => std::env::var("KEPLER_TOP_PASSWORD").unwrap_or_default(),
            };
            Some((user.clone(), password))
        }
    };
    Ok(Mode::Remote(remote::RemoteOptions {
        url,
        ca_file: m.get_one::<String>("tls.ca-file").map(Into::into),
        basic_auth,
        timeout: duration_arg(m, "timeout")?,
        refresh,
    }))
}

/// The exporter's configuration from the same flags, file and environment, as `kepler`
/// itself loads it.
fn local_config(flags: &Flags) -> Result<Config, String> {
    Config::load(flags).map_err(|e| e.to_string())
}

/// Runs `kepler top` with the arguments after `top`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let m = match command()
        .try_get_matches_from(std::iter::once(OsString::from("kepler top")).chain(args))
    {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let refresh = match duration_arg(&m, "refresh") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kepler top: {e}");
            return ExitCode::from(2);
        }
    };
    let mode = match mode(&m, refresh) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("kepler top: {e}");
            return ExitCode::from(2);
        }
    };
    if !io::stdout().is_terminal() {
        eprintln!("kepler top: needs a terminal (stdout is not one); `kepler` serves the same numbers as metrics");
        return ExitCode::FAILURE;
    }
    let glyphs = if m.get_flag("ascii") {
        Glyphs::ASCII
    } else {
        Glyphs::from_locale(|v| std::env::var(v).ok())
    };
    let log = LogBuffer::install();
    match run(mode, refresh, glyphs, &log) {
        Ok(()) => {
            // Whatever the runtime warned about stays readable after the screen is gone.
            for line in log.lines() {
                eprintln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in log.lines() {
                eprintln!("{line}");
            }
            eprintln!("kepler top: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Why the view stopped early.
enum TopError {
    /// The sources could not be set up from the configuration (exit code 2).
    Config(String),
    /// Anything else (exit code 1).
    Other(String),
}

impl TopError {
    fn exit_code(&self) -> u8 {
        match self {
            TopError::Config(_) => 2,
            TopError::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for TopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopError::Config(e) => write!(f, "invalid configuration: {e}"),
            TopError::Other(e) => f.write_str(e),
        }
    }
}

impl From<io::Error> for TopError {
    fn from(e: io::Error) -> Self {
        TopError::Other(format!("terminal: {e}"))
    }
}

/// What wakes the view: a key, a resize, a remote frame, or a signal to stop.
enum Msg {
    Term(Event),
    Remote(Result<Frame, String>),
    Quit,
}

fn run(mode: Mode, refresh: Duration, glyphs: Glyphs, log: &LogBuffer) -> Result<(), TopError> {
    let (tx, rx) = mpsc::channel::<Msg>();
    // Sources start before the screen changes, so their errors print plainly.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TopError::Other(format!("cannot start the async runtime: {e}")))?;
    let (mut feed, label) = match mode {
        Mode::Local(config) => {
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let feed =
                local::LocalFeed::start(&config, tokio.handle().clone()).map_err(|e| match e {
                    kepler_runtime::BuildError::Setting { .. } => TopError::Config(e.to_string()),
                    e => TopError::Other(e.to_string()),
                })?;
            (Some(feed), "local".to_string())
        }
        Mode::Remote(o) => {
            let label = o.url.to_string();
            remote::start(o, tx.clone(), Msg::Remote).map_err(TopError::Config)?;
            (None, label)
        }
    };
    let mut app = App::new(label, refresh.as_secs_f64());
    // SIGTERM, SIGHUP (the terminal closed) and SIGINT from elsewhere end the view like `q`,
    // so the terminal is always given back as it was.
    let quit = tx.clone();
    tokio.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
        }
        let _ = quit.send(Msg::Quit);
    });

    let _screen = Screen::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    // Keys are read on their own thread so that the loop sleeps on one channel.
    let keys = tx.clone();
    std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                if keys.send(Msg::Term(ev)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| TopError::Other(format!("cannot start the key reader: {e}")))?;
    drop(tx);

    let mut next_tick = Instant::now();
    let mut dirty = true;
    let mut seen_warnings = 0;
    loop {
        if let Some(feed) = feed.as_mut() {
            if Instant::now() >= next_tick {
                app.update(feed.tick());
                dirty = true;
                next_tick += refresh;
                let now = Instant::now();
                if next_tick < now {
                    // Fell behind (a slow tick, a suspended terminal): keep the cadence.
                    next_tick = now + refresh;
                }
            }
        }
        let lines = log.count();
        if lines != seen_warnings {
            app.warnings = log.lines();
            seen_warnings = lines;
            dirty = true;
        }
        if dirty {
            term.draw(|f| draw::draw(f, &mut app, &glyphs))?;
            dirty = false;
        }
        let msg = if feed.is_some() {
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        match msg {
            Msg::Remote(Ok(frame)) => app.update(frame),
            Msg::Remote(Err(why)) => app.fail(why),
            Msg::Quit => break,
            Msg::Term(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                let Some(input) = input(k.code, k.modifiers) else {
                    continue;
                };
                if app.key(input) == Action::Quit {
                    break;
                }
            }
            Msg::Term(Event::Resize(..)) => {}
            Msg::Term(_) => continue,
        }
        dirty = true;
    }
    Ok(())
}

fn input(code: KeyCode, mods: KeyModifiers) -> Option<Input> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Input::Interrupt,
        KeyCode::Char(c) => Input::Char(c),
        KeyCode::Enter => Input::Enter,
        KeyCode::Esc => Input::Esc,
        KeyCode::Backspace => Input::Backspace,
        KeyCode::Tab => Input::Tab,
        KeyCode::Up => Input::Up,
        KeyCode::Down => Input::Down,
        KeyCode::PageUp => Input::PageUp,
        KeyCode::PageDown => Input::PageDown,
        KeyCode::Home => Input::Home,
        _ => return None,
    })
}

/// The alternate screen in raw mode; the terminal is given back as it was on drop and on
/// panic.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Screen> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            Screen::leave();
            hook(info);
        }));
        terminal::enable_raw_mode()?;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(Screen)
    }

    fn leave() {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
        let _ = io::stdout().flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        Screen::leave();
    }
}

/// Log lines kept in memory while the screen is in use (a line on stderr would tear the
/// view), shown in the key line and printed when the view closes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<LogLines>>);

/// The latest lines, and how many were ever written (it changes when a line arrives, even
/// once the oldest are dropped).
#[derive(Default)]
struct LogLines {
    lines: std::collections::VecDeque<String>,
    written: usize,
}

/// At most this many lines are kept; the oldest go first.
const LOG_LINES: usize = 200;

impl LogBuffer {
    /// Routes `tracing` (level from `$KEPLER_LOG`, else warnings) into a new buffer.
    fn install() -> LogBuffer {
        let buf = LogBuffer::default();
        let filter = tracing_subscriber::EnvFilter::try_from_env("KEPLER_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    }

    fn count(&self) -> usize {
        self.0.lock().map_or(0, |v| v.written)
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|v| v.lines.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(data);
        if let Ok(mut v) = self.0.lock() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if v.lines.len() == LOG_LINES {
                    v.lines.pop_front();
                }
                v.lines.push_back(line.trim().to_string());
                v.written += 1;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
