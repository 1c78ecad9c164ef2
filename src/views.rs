//! Saved explorer views: a name and the URL query that reopens the view, kept in
//! `<data-dir>/views.db` (or, for several nodes, in their PostgreSQL database), apart from the
//! audit chain (they are settings, not evidence).
//! Server build only.

use crate::model::SavedView;
use crate::store::sql::{Db, Row, SqlError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest name a view may have, in characters.
pub const MAX_NAME: usize = 80;
/// The most views kept; saving past it is refused rather than silently dropping old ones.
pub const MAX_VIEWS: i64 = 500;

/// Why a view could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] SqlError),
}

impl From<rusqlite::Error> for ViewError {
    fn from(e: rusqlite::Error) -> Self {
        ViewError::Database(e.into())
    }
}

/// The saved views, in `views.db` or the cluster's PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct SavedViews {
    db: Db,
}

fn view_of(r: &Row) -> Result<SavedView, SqlError> {
    Ok(SavedView {
        id: r.int(0)?,
        name: r.text(1)?,
        query: r.text(2)?,
        created_at: r.int(3)?,
    })
}

impl SavedViews {
    /// Opens (creating) `<data_dir>/views.db`.
    ///
    /// # Errors
    /// The database cannot be opened.
    pub fn open(data_dir: &Path) -> Result<SavedViews, ViewError> {
        let conn = Connection::open(data_dir.join("views.db"))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS views (
                 id         INTEGER PRIMARY KEY,
                 name       TEXT    NOT NULL UNIQUE,
                 query      TEXT    NOT NULL,
                 created_at INTEGER NOT NULL
             );",
        )?;
        Ok(SavedViews {
            db: Db::Sqlite(Arc::new(Mutex::new(conn))),
        })
    }

    /// The views of a cluster, in its PostgreSQL database (whose migrations made the table).
    pub fn on(db: Db) -> SavedViews {
        SavedViews { db }
    }

    /// Every view, by name.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(&self) -> Result<Vec<SavedView>, ViewError> {
        self.db
            .transaction(|s| {
                let rows = s.query(
                    "SELECT id, name, query, created_at FROM views ORDER BY name",
                    &[],
                )?;
                Ok(rows.iter().map(view_of).collect::<Result<_, _>>()?)
            })
            .await
    }

    /// Saves `query` under `name`, replacing the view of that name if there is one.
    ///
    /// # Errors
    /// [`ViewError::Invalid`] for an empty or overlong name, a query that is not a URL query
    /// string, or too many views; database errors.
    pub async fn save(&self, name: String, query: String) -> Result<SavedView, ViewError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(ViewError::Invalid(format!(
                "name: give 1 to {MAX_NAME} characters"
            )));
        }
        if !(query.is_empty() || query.starts_with('?')) || query.len() > 4096 {
            return Err(ViewError::Invalid(
                "query: expected the explorer's URL query, starting with '?'".into(),
            ));
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.db
            .transaction(move |s| {
                let exists = s
                    .query_opt("SELECT id FROM views WHERE name = ?1", &[&name])?
                    .is_some();
                let count = s.query_one("SELECT COUNT(*) FROM views", &[])?.int(0)?;
                if !exists && count >= MAX_VIEWS {
                    return Err(ViewError::Invalid(format!(
                        "at most {MAX_VIEWS} views can be saved; delete some first"
                    )));
                }
                s.execute(
                    "INSERT INTO views (name, query, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET query = excluded.query",
                    &[&name, &query, &now],
                )?;
                let row = s.query_one(
                    "SELECT id, name, query, created_at FROM views WHERE name = ?1",
                    &[&name],
                )?;
                Ok(view_of(&row)?)
            })
            .await
    }

    /// Deletes the view with this id; returns whether there was one.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete(&self, id: i64) -> Result<bool, ViewError> {
        self.db
            .transaction(move |s| Ok(s.execute("DELETE FROM views WHERE id = ?1", &[&id])? > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn views_save_replace_list_delete_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let views = SavedViews::open(dir.path()).unwrap();
        let a = views
            .save("Denied logins".into(), "?q=login&outcome=denied".into())
            .await
            .unwrap();
        views
            .save("All errors".into(), "?level=error".into())
            .await
            .unwrap();
        let again = views
            .save("Denied logins".into(), "?q=login".into())
            .await
            .unwrap();
        assert_eq!(again.id, a.id, "same name replaces");
        drop(views);

        let views = SavedViews::open(dir.path()).unwrap();
        let names: Vec<(String, String)> = views
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.query))
            .collect();
        assert_eq!(
            names,
            vec![
                ("All errors".into(), "?level=error".into()),
                ("Denied logins".into(), "?q=login".into())
            ]
        );
        assert!(views.delete(a.id).await.unwrap());
        assert!(!views.delete(a.id).await.unwrap());
        assert_eq!(views.list().await.unwrap().len(), 1);

        for (name, query) in [
            ("", "?q=x"),
            ("x".repeat(81).as_str(), "?q=x"),
            ("ok", "q=x"),
        ] {
            assert!(matches!(
                views.save(name.into(), query.into()).await,
                Err(ViewError::Invalid(_))
            ));
        }
    }
}
