//! `trailwatch backup DEST`: a consistent online copy of a data directory while the server
//! runs. Each database is copied with SQLite's backup API in one step, which reads one
//! snapshot (in WAL mode the writer goes on meanwhile); the other files (the checkpoint log,
//! the signing key, the admin token) are copied as they are. Server build only.
//!
//! The order makes the copy verify: the checkpoint log and the derived search index are
//! taken first and the events last, so no checkpoint covers an event the copy lacks (which
//! verification would call truncation), and the index is at most behind its events (the
//! indexer catches up on the next start).

use crate::store::{DB_FILE, SEARCH_FILE};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a backup copied: each file's name and size in bytes, in the order taken.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub files: Vec<(String, u64)>,
}

/// Why a backup could not be made; the destination is then incomplete.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} holds no Trailwatch data (no {DB_FILE})")]
    NoData(PathBuf),
    #[error("{0} exists and is not empty; give a new directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0}: the database stayed busy; try again")]
    Busy(PathBuf),
}

/// Copies every file of `data_dir` into `dest` (created; it must not hold anything yet),
/// consistently while a server may be writing; `progress` hears each file's name as it is
/// taken.
///
/// # Errors
/// See [`BackupError`].
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BackupReport, BackupError> {
    if !data_dir.join(DB_FILE).is_file() {
        return Err(BackupError::NoData(data_dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    if dest.exists() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(BackupError::NotEmpty(dest.to_path_buf()));
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    // The data directory holds keys and tokens: the copy is the owner's alone too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700)).map_err(io(dest))?;
    }
    let mut plain = Vec::new();
    let mut databases = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io(data_dir))? {
        let entry = entry.map_err(io(data_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().map_err(io(&entry.path()))?.is_file() {
            continue;
        }
        // A database's log and shared memory are part of it: the backup API reads them.
        if name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal") {
            continue;
        }
        match name.ends_with(".db") {
            true => databases.push(name),
            false => plain.push(name),
        }
    }
    // The index first, the events last; the rest between (see the module doc).
    let rank = |name: &str| match name {
        SEARCH_FILE => 0,
        DB_FILE => 2,
        _ => 1,
    };
    databases.sort_by_key(|name| (rank(name), name.clone()));
    plain.sort();
    let mut report = BackupReport::default();
    for name in &plain {
        progress(name);
        let (from, to) = (data_dir.join(name), dest.join(name));
        let bytes = std::fs::copy(&from, &to).map_err(io(&from))?;
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(io(&to))?;
        report.files.push((name.clone(), bytes));
    }
    for name in &databases {
        progress(name);
        let to = dest.join(name);
        copy_database(&data_dir.join(name), &to)?;
        let bytes = std::fs::metadata(&to).map_err(io(&to))?.len();
        report.files.push((name.clone(), bytes));
    }
    Ok(report)
}

/// Copies one database through SQLite's backup API, all pages in one step (one snapshot).
fn copy_database(from: &Path, to: &Path) -> Result<(), BackupError> {
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(from))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(sqlite(from))?;
    let mut target = Connection::open(to).map_err(sqlite(to))?;
    let backup = Backup::new(&source, &mut target).map_err(sqlite(to))?;
    // A step of every page reads one snapshot; a writer that commits meanwhile does not
    // restart it, as it would restart a copy made in several steps.
    for _ in 0..50 {
        match backup.step(-1).map_err(sqlite(from))? {
            StepResult::Done => {
                drop(backup);
                // What the copy holds is on disk before the command says it is done.
                target
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(sqlite(to))?;
                return Ok(());
            }
            StepResult::More => continue,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(BackupError::Busy(from.to_path_buf()))
}
