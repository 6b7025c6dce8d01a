//! Reading millions of rows: a statement stepped and read through SQLite's C API, for the two
//! reads a long report spends its time in (`request_rows::each_request`, `memory::each_idle_sample`).
//! rusqlite's `Row::get` checks the column count and goes through a `ValueRef` for every value,
//! about a third of reading a 90-day log's columns; here a value is its type and its read, with
//! the same checks rusqlite makes (an integer column holding text is an error, an integer out of
//! the target's range too) and the same errors.
//!
//! The `unsafe` is confined to this file: the statement is prepared on the connection it borrows,
//! a row borrows the statement (so no value outlives the step that made it), and the statement is
//! finalized when dropped.

use rusqlite::types::Type;
use rusqlite::{Connection, Error, Result, ffi};
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;

/// A prepared statement being stepped.
pub struct Rows<'c> {
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    columns: c_int,
    _conn: PhantomData<&'c Connection>,
}

/// A parameter to bind.
pub enum Param<'a> {
    Int(i64),
    Text(&'a str),
}

impl<'c> Rows<'c> {
    /// Prepares `sql` on `conn` and binds `params` (numbered from 1).
    pub fn query(conn: &'c Connection, sql: &str, params: &[Param<'_>]) -> Result<Rows<'c>> {
        // SAFETY: the handle is the connection's own, used only while `conn` is borrowed.
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| Error::InvalidQuery)?;
        // SAFETY: `sql` is valid for `len` bytes; SQLite copies what it needs.
        let rc = unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut stmt, std::ptr::null_mut()) };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        if stmt.is_null() {
            return Err(Error::InvalidQuery);
        }
        // From here `Drop` finalizes the statement, whatever fails.
        // SAFETY: `stmt` was just prepared.
        let rows = Rows { db, stmt, columns: unsafe { ffi::sqlite3_column_count(stmt) }, _conn: PhantomData };
        for (i, p) in params.iter().enumerate() {
            let i = c_int::try_from(i + 1).map_err(|_| Error::InvalidQuery)?;
            // SAFETY: a text is copied by SQLite (SQLITE_TRANSIENT) before the call returns.
            let rc = unsafe {
                match p {
                    Param::Int(v) => ffi::sqlite3_bind_int64(rows.stmt, i, *v),
                    Param::Text(s) => ffi::sqlite3_bind_text(
                        rows.stmt,
                        i,
                        s.as_ptr().cast(),
                        c_int::try_from(s.len()).map_err(|_| Error::InvalidQuery)?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(db, rc));
            }
        }
        Ok(rows)
    }

    /// The next row, until there are none.
    #[allow(clippy::should_implement_trait)] // a lending iterator: each row borrows the statement
    #[inline]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        // SAFETY: the statement is alive until `self` is dropped; no row of an earlier step can
        // be held here, as each borrows `self` mutably.
        match unsafe { ffi::sqlite3_step(self.stmt) } {
            ffi::SQLITE_ROW => Ok(Some(Row { rows: self })),
            ffi::SQLITE_DONE => Ok(None),
            rc => Err(error(self.db, rc)),
        }
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}

/// The row a step produced.
pub struct Row<'s> {
    rows: &'s Rows<'s>,
}

impl Row<'_> {
    /// Column `i`'s value and its type, from one lookup of the column (each `sqlite3_column_*`
    /// call looks it up anew, so reading the type and then the value looked it up twice).
    #[inline]
    fn kind(&self, i: usize) -> Result<(*mut ffi::sqlite3_value, c_int)> {
        let col =
            c_int::try_from(i).ok().filter(|c| *c < self.rows.columns).ok_or_else(|| Error::InvalidColumnIndex(i))?;
        // SAFETY: a column of the current row. The value is "unprotected" (SQLite takes no mutex
        // to read it), which is sound here: the connection is used by one thread at a time
        // (rusqlite's `Connection` is not `Sync`, and the rows borrow it), and the value is read
        // before the next step, as the borrow of `Rows` ensures.
        unsafe {
            let value = ffi::sqlite3_column_value(self.rows.stmt, col);
            Ok((value, ffi::sqlite3_value_type(value)))
        }
    }

    /// An integer column; NULL is `None`, any other type an error (as rusqlite's `get`).
    #[inline]
    pub fn int(&self, i: usize) -> Result<Option<i64>> {
        match self.kind(i)? {
            (_, ffi::SQLITE_NULL) => Ok(None),
            // SAFETY: a column of the current row, holding an integer.
            (value, ffi::SQLITE_INTEGER) => Ok(Some(unsafe { ffi::sqlite3_value_int64(value) })),
            (_, t) => Err(Error::InvalidColumnType(i, String::new(), type_of(t))),
        }
    }

    /// An integer column converted to `T`; out of `T`'s range is an error (as rusqlite's `get`).
    #[inline]
    pub fn int_as<T: TryFrom<i64>>(&self, i: usize) -> Result<Option<T>> {
        self.int(i)?.map(|v| T::try_from(v).map_err(|_| Error::IntegralValueOutOfRange(i, v))).transpose()
    }

    /// A real column (an integer is read as a real, as rusqlite's `get::<f64>` does).
    #[inline]
    pub fn real(&self, i: usize) -> Result<Option<f64>> {
        match self.kind(i)? {
            (_, ffi::SQLITE_NULL) => Ok(None),
            // SAFETY: a column of the current row, holding a number.
            (value, ffi::SQLITE_FLOAT | ffi::SQLITE_INTEGER) => Ok(Some(unsafe { ffi::sqlite3_value_double(value) })),
            (_, t) => Err(Error::InvalidColumnType(i, String::new(), type_of(t))),
        }
    }

    /// A text column's bytes, borrowed until the next step (not checked as UTF-8: see `text`).
    #[inline]
    pub fn bytes(&self, i: usize) -> Result<Option<&[u8]>> {
        match self.kind(i)? {
            (_, ffi::SQLITE_NULL) => Ok(None),
            (value, ffi::SQLITE_TEXT) => {
                // SAFETY: text first, then its length (SQLite's documented order); the bytes stay
                // valid until the next step, which needs `&mut Rows` while this row borrows it.
                unsafe {
                    let p = ffi::sqlite3_value_text(value);
                    let n = ffi::sqlite3_value_bytes(value);
                    if p.is_null() {
                        return Ok(Some(&[]));
                    }
                    Ok(Some(std::slice::from_raw_parts(p, usize::try_from(n).unwrap_or(0))))
                }
            }
            (_, t) => Err(Error::InvalidColumnType(i, String::new(), type_of(t))),
        }
    }

    /// A text column, checked as UTF-8.
    #[inline]
    pub fn text(&self, i: usize) -> Result<Option<&str>> {
        self.bytes(i)?.map(|b| utf8(i, b)).transpose()
    }
}

/// `bytes` as text, or the error rusqlite gives for text that is not UTF-8.
#[inline]
pub fn utf8(i: usize, b: &[u8]) -> Result<&str> {
    std::str::from_utf8(b).map_err(|e| Error::Utf8Error(i, e))
}

fn type_of(t: c_int) -> Type {
    match t {
        ffi::SQLITE_INTEGER => Type::Integer,
        ffi::SQLITE_FLOAT => Type::Real,
        ffi::SQLITE_TEXT => Type::Text,
        ffi::SQLITE_BLOB => Type::Blob,
        _ => Type::Null,
    }
}

/// The connection's error for `rc`, with SQLite's message.
fn error(db: *mut ffi::sqlite3, rc: c_int) -> Error {
    // SAFETY: `db` is an open connection; its message is copied at once.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    Error::SqliteFailure(ffi::Error::new(rc), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same value, or an error of the same kind.
    fn same<T: PartialEq + std::fmt::Debug>(ours: Result<T>, theirs: Result<T>) {
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b), "{a:?} vs {b:?}"),
            (a, b) => panic!("{a:?} vs {b:?}"),
        }
    }

    #[test]
    fn values_and_errors_are_rusqlites() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB);
             INSERT INTO t VALUES (42, 1.5, 'ok', x'00'), (NULL, 3, NULL, NULL), (5000000000, NULL, 'x', NULL),
                                  ('text', 'text', 2, NULL), (1, 1, CAST(x'ff' AS TEXT), NULL), (7, 0, 'y', NULL);",
        )
        .unwrap();
        let sql = "SELECT i, r, s, b FROM t WHERE i IS NULL OR i <> ?1 OR s = ?2";
        let mut ours = Rows::query(&conn, sql, &[Param::Int(7), Param::Text("x")]).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut theirs = stmt.query(rusqlite::params![7, "x"]).unwrap();
        let mut n = 0;
        while let Some(r) = ours.next().unwrap() {
            let t = theirs.next().unwrap().expect("as many rows");
            same(r.int(0), t.get::<_, Option<i64>>(0));
            same(r.int_as::<u32>(0), t.get::<_, Option<u32>>(0));
            same(r.real(1), t.get::<_, Option<f64>>(1));
            same(r.text(2).map(|s| s.map(str::to_string)), t.get::<_, Option<String>>(2));
            same(r.real(3), t.get::<_, Option<f64>>(3));
            same(r.int(4), t.get::<_, Option<i64>>(4));
            n += 1;
        }
        assert!(theirs.next().unwrap().is_none());
        assert_eq!(n, 5, "the bound parameters left out the row with 7");
        // The cases above, by name.
        let mut rows = Rows::query(&conn, "SELECT i, r, s FROM t", &[]).unwrap();
        let first = rows.next().unwrap().unwrap();
        assert_eq!(
            (first.int(0).unwrap(), first.real(1).unwrap(), first.text(2).unwrap()),
            (Some(42), Some(1.5), Some("ok"))
        );
        let second = rows.next().unwrap().unwrap();
        assert_eq!((second.int(0).unwrap(), second.real(1).unwrap()), (None, Some(3.0)), "an integer read as a real");
        let third = rows.next().unwrap().unwrap();
        assert!(matches!(third.int_as::<u32>(0), Err(Error::IntegralValueOutOfRange(0, 5_000_000_000))));
        let fourth = rows.next().unwrap().unwrap();
        assert!(matches!(fourth.int(0), Err(Error::InvalidColumnType(0, _, Type::Text))));
        let fifth = rows.next().unwrap().unwrap();
        assert!(matches!(fifth.text(2), Err(Error::Utf8Error(2, _))));
        // A statement that does not prepare says why.
        let Err(Error::SqliteFailure(_, Some(message))) = Rows::query(&conn, "SELECT nope FROM t", &[]) else {
            panic!("an error")
        };
        assert!(message.contains("nope"), "{message}");
    }
}
