//! One statement, either backend: the small tables beside the events (saved views, settings,
//! users, tokens, sessions, alerts) are read and written with the same SQL on SQLite and on
//! PostgreSQL. A [`Db`] runs a closure in one transaction on a blocking thread and hands it a
//! [`Session`], whose statements use SQLite's `?N` placeholders (numbered as PostgreSQL's `$N`
//! there) and take [`Value`]s, typed on PostgreSQL by what the prepared statement expects.
//! Rows come back as owned [`Row`]s of [`Value`]s. Integers are 64-bit on both (tables on
//! PostgreSQL use `bigint`); a true-or-false is an integer 0 or 1, as SQLite keeps it.
//!
//! What is not portable stays out of these statements: SQLite's `INSERT OR REPLACE` and
//! `last_insert_rowid()` (use `ON CONFLICT … DO UPDATE` and `RETURNING`).

use super::StoreError;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{ToSql, Type};

/// A value a statement takes or a row holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// What can be a statement's parameter.
pub trait Param: Sync {
    fn value(&self) -> Value;
}

impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}
impl Param for u32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Param for [u8] {
    fn value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A column did not hold what its reader expected.
    #[error("column {idx}: {detail}")]
    Column { idx: usize, detail: String },
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Store(e) => e,
            SqlError::Sqlite(e) => StoreError::Sqlite(e),
            column @ SqlError::Column { .. } => StoreError::Corrupt {
                seq: 0,
                detail: column.to_string(),
            },
        }
    }
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        SqlError::Store(StoreError::from(e))
    }
}

/// One row, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, idx: usize) -> Result<&Value, SqlError> {
        self.0.get(idx).ok_or_else(|| SqlError::Column {
            idx,
            detail: "no such column".into(),
        })
    }

    fn wrong(idx: usize, want: &str, got: &Value) -> SqlError {
        SqlError::Column {
            idx,
            detail: format!("expected {want}, found {got:?}"),
        }
    }

    /// An integer that may be NULL.
    ///
    /// # Errors
    /// The column holds something else.
    pub fn opt_int(&self, idx: usize) -> Result<Option<i64>, SqlError> {
        match self.at(idx)? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            other => Err(Self::wrong(idx, "an integer", other)),
        }
    }

    /// An integer.
    ///
    /// # Errors
    /// The column is NULL or holds something else.
    pub fn int(&self, idx: usize) -> Result<i64, SqlError> {
        self.opt_int(idx)?
            .ok_or_else(|| Self::wrong(idx, "an integer", &Value::Null))
    }

    /// A true-or-false kept as an integer.
    ///
    /// # Errors
    /// As [`Row::int`].
    pub fn flag(&self, idx: usize) -> Result<bool, SqlError> {
        Ok(self.int(idx)? != 0)
    }

    /// Text that may be NULL.
    ///
    /// # Errors
    /// The column holds something else.
    pub fn opt_text(&self, idx: usize) -> Result<Option<String>, SqlError> {
        match self.at(idx)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            other => Err(Self::wrong(idx, "text", other)),
        }
    }

    /// Text.
    ///
    /// # Errors
    /// The column is NULL or holds something else.
    pub fn text(&self, idx: usize) -> Result<String, SqlError> {
        self.opt_text(idx)?
            .ok_or_else(|| Self::wrong(idx, "text", &Value::Null))
    }

    /// Bytes that may be NULL.
    ///
    /// # Errors
    /// The column holds something else.
    pub fn opt_blob(&self, idx: usize) -> Result<Option<Vec<u8>>, SqlError> {
        match self.at(idx)? {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b.clone())),
            other => Err(Self::wrong(idx, "bytes", other)),
        }
    }

    /// Bytes.
    ///
    /// # Errors
    /// The column is NULL or holds something else.
    pub fn blob(&self, idx: usize) -> Result<Vec<u8>, SqlError> {
        self.opt_blob(idx)?
            .ok_or_else(|| Self::wrong(idx, "bytes", &Value::Null))
    }
}

/// `sql` with SQLite's `?N` placeholders as PostgreSQL's `$N` (a `?` not followed by a digit
/// is left alone).
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as the Rust type PostgreSQL expects for a parameter of type `ty`.
fn typed(value: Value, ty: &Type, idx: usize) -> Result<Box<dyn ToSql + Sync + Send>, SqlError> {
    let bad = |v: &Value| SqlError::Column {
        idx,
        detail: format!("parameter of type {ty} given {v:?}"),
    };
    Ok(match (value, ty) {
        (Value::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Value::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (Value::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (Value::Null, t) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Int(i), t) if *t == Type::INT8 => Box::new(i),
        (Value::Int(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(i).map_err(|_| bad(&Value::Int(i)))?)
        }
        (Value::Int(i), t) if *t == Type::BOOL => Box::new(i != 0),
        (Value::Text(s), t) if *t == Type::TEXT || *t == Type::VARCHAR => Box::new(s),
        (Value::Blob(b), t) if *t == Type::BYTEA => Box::new(b),
        (v, _) => return Err(bad(&v)),
    })
}

/// A PostgreSQL row as [`Value`]s.
fn row_of(row: &tokio_postgres::Row) -> Result<Row, SqlError> {
    let mut values = Vec::with_capacity(row.len());
    for (idx, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let err = |e: tokio_postgres::Error| SqlError::Column {
            idx,
            detail: e.to_string(),
        };
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(idx)
                .map_err(err)?
                .map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(idx)
                .map_err(err)?
                .map(|i| Value::Int(i.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(idx)
                .map_err(err)?
                .map(|b| Value::Int(b.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(idx)
                .map_err(err)?
                .map(Value::Blob)
        } else {
            row.try_get::<_, Option<String>>(idx)
                .map_err(err)?
                .map(Value::Text)
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// A transaction in progress on either backend: see [`Db::transaction`].
pub struct Session<'c> {
    inner: Inner<'c>,
}

enum Inner<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres {
        tx: &'c deadpool_postgres::Transaction<'c>,
        runtime: &'c tokio::runtime::Handle,
    },
}

impl<'c> Session<'c> {
    /// A session over an SQLite connection the caller holds (in a transaction of its own).
    pub fn sqlite(conn: &'c rusqlite::Connection) -> Session<'c> {
        Session {
            inner: Inner::Sqlite(conn),
        }
    }

    /// Makes the tables an SQLite database lacks (`CREATE TABLE IF NOT EXISTS …`, several
    /// statements); nothing on PostgreSQL, whose schema is its versioned migrations'.
    ///
    /// # Errors
    /// Database errors.
    pub fn sqlite_schema(&self, sql: &str) -> Result<(), SqlError> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres { .. } => Ok(()),
        }
    }

    /// Runs a statement; how many rows it changed.
    ///
    /// # Errors
    /// Database errors.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, SqlError> {
        match &self.inner {
            Inner::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(stmt.execute(sqlite_params(params))? as u64)
            }
            Inner::Postgres { tx, runtime } => runtime.block_on(async {
                let (stmt, values) = pg_statement(tx, sql, params).await?;
                Ok(tx.execute(&stmt, &refs(&values)).await?)
            }),
        }
    }

    /// The rows of a query.
    ///
    /// # Errors
    /// Database errors, or a value no [`Value`] holds.
    pub fn query(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, SqlError> {
        match &self.inner {
            Inner::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(sqlite_params(params))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(n);
                    for idx in 0..n {
                        values.push(match row.get_ref(idx)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                            rusqlite::types::ValueRef::Real(f) => Value::Text(f.to_string()),
                            rusqlite::types::ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row(values));
                }
                Ok(out)
            }
            Inner::Postgres { tx, runtime } => runtime.block_on(async {
                let (stmt, values) = pg_statement(tx, sql, params).await?;
                tx.query(&stmt, &refs(&values))
                    .await?
                    .iter()
                    .map(row_of)
                    .collect()
            }),
        }
    }

    /// The first row of a query, if any.
    ///
    /// # Errors
    /// As [`Session::query`].
    pub fn query_opt(&self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, SqlError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row of a query.
    ///
    /// # Errors
    /// As [`Session::query`], or no row.
    pub fn query_one(&self, sql: &str, params: &[&dyn Param]) -> Result<Row, SqlError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| SqlError::Column {
                idx: 0,
                detail: "the query returned no row".into(),
            })
    }
}

fn sqlite_params(params: &[&dyn Param]) -> rusqlite::ParamsFromIter<Vec<rusqlite::types::Value>> {
    rusqlite::params_from_iter(
        params
            .iter()
            .map(|p| match p.value() {
                Value::Null => rusqlite::types::Value::Null,
                Value::Int(i) => rusqlite::types::Value::Integer(i),
                Value::Text(s) => rusqlite::types::Value::Text(s),
                Value::Blob(b) => rusqlite::types::Value::Blob(b),
            })
            .collect::<Vec<_>>(),
    )
}

type Typed = Vec<Box<dyn ToSql + Sync + Send>>;

/// `sql` prepared (and cached) on PostgreSQL, with `params` typed as it expects them.
async fn pg_statement(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&dyn Param],
) -> Result<(tokio_postgres::Statement, Typed), SqlError> {
    let stmt = tx.prepare_cached(&numbered(sql)).await?;
    let values = stmt
        .params()
        .iter()
        .zip(params)
        .enumerate()
        .map(|(idx, (ty, p))| typed(p.value(), ty, idx))
        .collect::<Result<_, _>>()?;
    Ok((stmt, values))
}

fn refs(values: &Typed) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref() as _).collect()
}

/// How [`Db::run`] wraps a closure's statements.
#[derive(Clone, Copy)]
enum Mode {
    /// One transaction that may write.
    Write,
    /// One read-only snapshot.
    Snapshot,
    /// Each statement on its own (SQLite).
    Statements,
}

/// A database for small tables: an SQLite file's connection, or a PostgreSQL pool shared by
/// every node.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(deadpool_postgres::Pool),
}

impl Db {
    /// Runs `f` in one transaction on a blocking thread, committed when it returns `Ok` and
    /// rolled back otherwise.
    ///
    /// # Errors
    /// Whatever `f` returns, and database errors beginning or committing.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Write, f).await
    }

    /// Runs `f` over one consistent snapshot that it only reads (on PostgreSQL, a read-only
    /// repeatable-read transaction; on SQLite, any read transaction is one).
    ///
    /// # Errors
    /// As [`Db::transaction`].
    pub async fn snapshot<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Snapshot, f).await
    }

    /// Runs `f`'s statements each committed on its own on SQLite, as a request's check of its
    /// credential does: no write lock is taken for what usually only reads. (On PostgreSQL
    /// they share one read-committed transaction, which takes no lock either.)
    ///
    /// # Errors
    /// As [`Db::transaction`].
    pub async fn statements<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Statements, f).await
    }

    /// Empties an SQLite database's write-ahead log into the file (after a rewrite that must
    /// leave no old copy behind); nothing on PostgreSQL.
    ///
    /// # Errors
    /// Database errors.
    pub async fn truncate_sqlite_wal(&self) -> Result<(), SqlError> {
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn
                        .lock()
                        .map_err(|_| SqlError::Store(StoreError::Closed))?;
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                    Ok(())
                })
                .await
                .map_err(|e| SqlError::Store(StoreError::Io(std::io::Error::other(e))))?
            }
            Db::Postgres(_) => Ok(()),
        }
    }

    async fn run<T, E, F>(&self, mode: Mode, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
    {
        let joined = match self {
            Db::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn
                        .lock()
                        .map_err(|_| SqlError::Store(StoreError::Closed))?;
                    // A writing transaction takes the write lock first (waiting out the busy
                    // timeout for another process's): a read that later writes could
                    // otherwise find the snapshot stale and fail at once.
                    let behavior = match mode {
                        Mode::Statements => return f(&Session::sqlite(&conn)),
                        Mode::Snapshot => rusqlite::TransactionBehavior::Deferred,
                        Mode::Write => rusqlite::TransactionBehavior::Immediate,
                    };
                    let tx = rusqlite::Transaction::new_unchecked(&conn, behavior)
                        .map_err(SqlError::from)?;
                    let out = f(&Session::sqlite(&tx))?;
                    tx.commit().map_err(SqlError::from)?;
                    Ok(out)
                })
                .await
            }
            Db::Postgres(pool) => {
                let mut client = pool
                    .get()
                    .await
                    .map_err(|e| E::from(SqlError::Store(e.into())))?;
                let runtime = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let builder = client.build_transaction();
                    let builder = match mode {
                        Mode::Snapshot => builder
                            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                            .read_only(true),
                        Mode::Write | Mode::Statements => builder,
                    };
                    let tx = runtime.block_on(builder.start()).map_err(SqlError::from)?;
                    let out = f(&Session {
                        inner: Inner::Postgres {
                            tx: &tx,
                            runtime: &runtime,
                        },
                    })?;
                    runtime.block_on(tx.commit()).map_err(SqlError::from)?;
                    Ok(out)
                })
                .await
            }
        };
        joined.map_err(|e| E::from(SqlError::Store(StoreError::Io(std::io::Error::other(e)))))?
    }
}

/// A row read back into an event (`store::row`), whichever backend it came from.
impl super::row::Columns for Row {
    fn text(&self, idx: usize) -> Result<Option<String>, super::row::BadColumn> {
        self.opt_text(idx).map_err(bad_column(idx))
    }
    fn int(&self, idx: usize) -> Result<Option<i64>, super::row::BadColumn> {
        self.opt_int(idx).map_err(bad_column(idx))
    }
    fn bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, super::row::BadColumn> {
        self.opt_blob(idx).map_err(bad_column(idx))
    }
    fn flag(&self, idx: usize) -> Result<bool, super::row::BadColumn> {
        Row::flag(self, idx).map_err(bad_column(idx))
    }
}

fn bad_column(idx: usize) -> impl Fn(SqlError) -> super::row::BadColumn {
    move |e| super::row::BadColumn {
        idx,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_for_postgresql() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d IN (?2, ?10)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $10)"
        );
    }
}
