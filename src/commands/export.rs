//! `soakd export`: the log's requests (or memory samples) as JSON lines or CSV on stdout, for
//! DuckDB, pandas or a warehouse — every column, streamed, from a read-only connection (an
//! export never changes the log, whichever soakd version wrote it).

use crate::cli::ExportFormat as Format;
use crate::config;
use crate::store::export::{self, Cell, Table};
use anyhow::Context;
use rusqlite::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct Args {
    pub db: Option<PathBuf>,
    pub table: Table,
    pub format: Format,
    pub since: Option<String>,
    pub until: Option<String>,
}

pub fn run(flag: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let db = match args.db {
        Some(db) => db,
        None => config::load(flag).context("finding the database (or name one with --db PATH)")?.db,
    };
    // All rows unless a window is given; --until alone exports everything before it.
    let w = crate::report::Window::open_ended(args.since.as_deref(), args.until.as_deref(), chrono::Local::now())
        .map_err(anyhow::Error::msg)?;
    let (from, to) = (w.from, w.to);
    if !db.exists() {
        anyhow::bail!("{}: no such database (name one with --db PATH)", db.display());
    }
    let conn = crate::store::open_read_only(&db).with_context(|| format!("opening {} read-only", db.display()))?;
    let stdout = std::io::stdout().lock();
    let written = match args.format {
        Format::Jsonl => jsonl(&conn, args.table, (from, to), std::io::BufWriter::new(stdout)),
        Format::Csv => csv(&conn, args.table, (from, to), stdout),
    };
    match written {
        Ok(n) => {
            eprintln!("soakd export: {n} rows from {}", db.display());
            Ok(ExitCode::SUCCESS)
        }
        // `soakd export | head`: the reader left; that is not an error.
        Err(e) if broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.context(format!("exporting from {}", db.display()))),
    }
}

fn jsonl(conn: &Connection, table: Table, window: (i64, i64), mut out: impl Write) -> anyhow::Result<u64> {
    let n = export::each_row(conn, table, window, |names, cells| {
        let mut object = serde_json::Map::with_capacity(names.len());
        for (name, cell) in names.iter().zip(cells) {
            let value = match cell {
                Cell::Null => serde_json::Value::Null,
                Cell::Integer(v) => (*v).into(),
                Cell::Real(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
                Cell::Text(t) => (*t).into(),
                Cell::Blob(len) => format!("<{len} bytes>").into(),
            };
            object.insert(name.clone(), value);
        }
        serde_json::to_writer(&mut out, &object)?;
        out.write_all(b"\n")
    })?;
    out.flush()?;
    Ok(n)
}

fn csv(conn: &Connection, table: Table, window: (i64, i64), out: impl Write) -> anyhow::Result<u64> {
    let mut w = ::csv::Writer::from_writer(out);
    let mut header = true;
    let mut fields: Vec<String> = Vec::new();
    let n = export::each_row(conn, table, window, |names, cells| {
        if std::mem::take(&mut header) {
            w.write_record(names)?;
        }
        fields.clear();
        fields.extend(cells.iter().map(|c| match c {
            Cell::Null => String::new(),
            Cell::Integer(v) => v.to_string(),
            Cell::Real(v) => v.to_string(),
            Cell::Text(t) => (*t).to_string(),
            Cell::Blob(len) => format!("<{len} bytes>"),
        }));
        w.write_record(&fields).map_err(std::io::Error::other)
    })?;
    w.flush()?;
    Ok(n)
}

/// Whether writing failed because the reader closed the pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
