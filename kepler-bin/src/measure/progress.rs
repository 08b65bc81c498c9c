//! The one-line live progress on a terminal: elapsed time, watts now, joules so far. It is
//! rewritten in place each tick and erased at the end, so the report follows a clean line.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Erase the current line: carriage return, then ANSI "erase in line" (whole line).
const ERASE: &str = "\r\x1b[2K";

/// The progress line; does nothing unless stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    on: bool,
    shown: bool,
    last_joules: f64,
    last_at: Duration,
}

impl Progress {
    /// On when stderr is a terminal.
    pub fn new() -> Progress {
        Progress::with(std::io::stderr().is_terminal())
    }

    fn with(on: bool) -> Progress {
        Progress {
            on,
            shown: false,
            last_joules: 0.0,
            last_at: Duration::ZERO,
        }
    }

    /// Shows the state after a tick: `joules` the command's energy so far at `elapsed`.
    pub fn update(&mut self, elapsed: Duration, joules: f64) {
        let line = self.line(elapsed, joules);
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{ERASE}{line}");
            let _ = err.flush();
            self.shown = true;
        }
    }

    /// The line for a tick, updating the "watts now" baseline.
    fn line(&mut self, elapsed: Duration, joules: f64) -> String {
        let dt = elapsed.saturating_sub(self.last_at).as_secs_f64();
        let watts = if dt > 0.0 {
            (joules - self.last_joules).max(0.0) / dt
        } else {
            0.0
        };
        self.last_joules = joules;
        self.last_at = elapsed;
        format!(
            "kepler run: {:.1} s  {:.2} W  {:.2} J",
            elapsed.as_secs_f64(),
            watts,
            joules
        )
    }

    /// Erases the line, if one is shown.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{ERASE}");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watts_now_is_the_latest_tick_only() {
        let mut p = Progress::with(false);
        assert_eq!(
            p.line(Duration::from_secs(1), 10.0),
            "kepler run: 1.0 s  10.00 W  10.00 J"
        );
        assert_eq!(
            p.line(Duration::from_secs(3), 14.0),
            "kepler run: 3.0 s  2.00 W  14.00 J"
        );
        p.update(Duration::from_secs(4), 15.0);
        assert!(!p.shown, "nothing is written when stderr is not a terminal");
    }
}
