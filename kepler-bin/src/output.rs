//! Where the stdout table and JSON lines go (`exporter.stdout`, `exporter.json`): opened
//! once at start (a path that cannot be opened is a configuration error), written once per
//! tick from the monitor thread. A failed write is logged once and the exporter goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};

use kepler_export::{render_json, render_table, ExportContext};
use kepler_runtime::Tick;

use crate::config::Outputs;

/// The open outputs.
pub struct Writers {
    table: bool,
    json: Option<Sink>,
    failed: bool,
}

enum Sink {
    Stdout,
    File(File),
}

impl Writers {
    /// Opens the JSON file (appending) when one is configured.
    pub fn open(o: &Outputs) -> io::Result<Writers> {
        let json = match &o.json {
            None => None,
            Some(p) if p.as_os_str() == "-" => Some(Sink::Stdout),
            Some(p) => Some(Sink::File(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
            )),
        };
        Ok(Writers {
            table: o.stdout,
            json,
            failed: false,
        })
    }

    /// Writes the tick to every configured output.
    pub fn write(&mut self, tick: &Tick, ctx: &ExportContext) {
        let mut result = Ok(());
        if self.table {
            let text = render_table(&tick.snapshot, ctx);
            result = result.and(writeln!(io::stdout().lock(), "{text}"));
        }
        if let Some(sink) = &mut self.json {
            let mut line = render_json(&tick.snapshot, tick.gpu.as_deref(), ctx);
            line.push('\n');
            result = result.and(match sink {
                Sink::Stdout => io::stdout().lock().write_all(line.as_bytes()),
                Sink::File(f) => f.write_all(line.as_bytes()),
            });
        }
        match result {
            Err(e) if !self.failed => {
                tracing::warn!(error = %e, "cannot write the stdout/JSON output");
                self.failed = true;
            }
            Err(_) => {}
            Ok(()) => self.failed = false,
        }
    }
}
