//! Reading a table out row by row for `soakd export`: every column, in id order, within a window
//! of the table's own time column — streamed, so a log of any size is read in constant memory.

use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// The tables `soakd export` writes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    /// One row per request.
    Requests,
    /// One row per memory sample.
    #[value(alias = "memory_samples")]
    MemorySamples,
}

impl Table {
    fn sql_name(self) -> &'static str {
        match self {
            Table::Requests => "requests",
            Table::MemorySamples => "memory_samples",
        }
    }

    /// The column a window applies to.
    fn time_column(self) -> &'static str {
        match self {
            Table::Requests => "started_at",
            Table::MemorySamples => "taken_at",
        }
    }
}

/// One value of a row, as SQLite holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    /// A blob (no column of soakd's holds one), as its size.
    Blob(usize),
}

/// Calls `row` with the column names and each row of `table` whose time lies in `[from, to)`,
/// oldest id first. Requests still in flight are left out (their row is not final).
pub fn each_row(
    conn: &Connection,
    table: Table,
    (from, to): (i64, i64),
    mut row: impl FnMut(&[String], &[Cell<'_>]) -> std::io::Result<()>,
) -> anyhow::Result<u64> {
    let in_flight = match table {
        Table::Requests => format!(" AND outcome <> '{}'", crate::measure::outcome::IN_FLIGHT),
        Table::MemorySamples => String::new(),
    };
    let sql = format!(
        "SELECT * FROM {} WHERE {time} >= ?1 AND {time} < ?2{in_flight} ORDER BY id",
        table.sql_name(),
        time = table.time_column()
    );
    let mut stmt = conn.prepare(&sql)?;
    let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let mut rows = stmt.query([from, to])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let cells = (0..names.len())
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Integer(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(std::str::from_utf8(t).unwrap_or("")),
                    ValueRef::Blob(b) => Cell::Blob(b.len()),
                })
            })
            .collect::<rusqlite::Result<Vec<Cell<'_>>>>()?;
        row(&names, &cells)?;
        n += 1;
    }
    Ok(n)
}
