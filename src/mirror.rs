//! The JSONL mirror (`serve --mirror-dir DIR`): every stored event, in seq order, appended to
//! a file per day (`2026-11-23.jsonl`, by the UTC day the event was received), for shipping
//! to other tools; `GET /api/v1/logs?date=` serves a day's file.
//!
//! The store stays the record; the mirror follows it. On start the mirror finds the last seq
//! it wrote (the last complete line of its newest file; a torn line left by a crash is cut
//! off) and follows the store from there, so it has every event exactly once, however it was
//! stopped. Server build only.

use crate::model::{Seq, StoredEvent};
use crate::store::Store;
use chrono::NaiveDate;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file of `day` in `dir`.
pub fn day_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("{}.jsonl", day.format("%Y-%m-%d")))
}

/// The days that have a file in `dir`, oldest first, with each file's size.
pub fn days(dir: &Path) -> std::io::Result<Vec<(NaiveDate, u64)>> {
    let mut days = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        days.push((day, entry.metadata()?.len()));
    }
    days.sort();
    Ok(days)
}

/// Starts mirroring `store` into `dir` on a thread of its own (file writes block). It ends
/// when the store closes.
///
/// # Errors
/// The directory cannot be created or its newest file cannot be read.
pub fn spawn(store: &Store, dir: &Path, runtime: tokio::runtime::Handle) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let after = resume_point(dir)?;
    tracing::info!(dir = %dir.display(), after, "mirroring events to JSONL files");
    let mut following = store.follow_from(Seq(after));
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("trailwatch-mirror".into())
        .spawn(move || {
            let mut out = DayWriter::new(dir);
            loop {
                let batch = runtime.block_on(async {
                    use futures::FutureExt as _;
                    let mut batch: Vec<Arc<StoredEvent>> = Vec::new();
                    match following.next().await {
                        Ok(Some(e)) => batch.push(e),
                        Ok(None) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                    // Whatever else is ready now shares the write and the flush.
                    while batch.len() < 10_000 {
                        match following.next().now_or_never() {
                            Some(Ok(Some(e))) => batch.push(e),
                            _ => break,
                        }
                    }
                    Ok(Some(batch))
                });
                match batch {
                    Ok(Some(events)) => {
                        if let Err(e) = out.write(&events) {
                            // Not retried in place: a restart resumes from the last line
                            // written, so nothing is skipped.
                            tracing::error!(error = %e, "the mirror stopped; restart to resume it");
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "the mirror could not read the store; it stopped");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The seq of the last event written: the last whole line of the newest file that has one.
/// A torn last line (a crash mid-write) is cut off first.
pub fn resume_point(dir: &Path) -> std::io::Result<u64> {
    for (day, _) in days(dir)?.into_iter().rev() {
        let path = day_file(dir, day);
        if let Some(line) = last_whole_line(&path)? {
            #[derive(serde::Deserialize)]
            struct Line {
                seq: u64,
            }
            let seq = serde_json::from_slice::<Line>(&line)
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "{}: the last line has no seq: {e}",
                        path.display()
                    ))
                })?
                .seq;
            return Ok(seq);
        }
    }
    Ok(0)
}

/// The last newline-terminated line of `path` (without its newline), after cutting off what
/// follows it; `None` if the file holds no whole line.
fn last_whole_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    // Read back from the end until the window holds the newline before the last line too.
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start))?;
        file.read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                if len > 0 {
                    tracing::warn!(path = %path.display(), "cutting off a torn last line");
                    file.set_len(0)?;
                }
                return Ok(None);
            }
            window *= 4;
            continue;
        };
        let begin = match tail[..end].iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        if end + 1 < tail.len() {
            tracing::warn!(path = %path.display(), "cutting off a torn last line");
            file.set_len(start + end as u64 + 1)?;
        }
        return Ok(Some(tail[begin..end].to_vec()));
    }
}

/// Appends events to the file of their day.
struct DayWriter {
    dir: PathBuf,
    open: Option<(NaiveDate, File)>,
    buf: Vec<u8>,
}

impl DayWriter {
    fn new(dir: PathBuf) -> DayWriter {
        DayWriter {
            dir,
            open: None,
            buf: Vec::with_capacity(1 << 20),
        }
    }

    fn write(&mut self, events: &[Arc<StoredEvent>]) -> std::io::Result<()> {
        for event in events {
            let day = event.received_at.date_naive();
            if self.open.as_ref().map(|(d, _)| *d) != Some(day) {
                self.flush()?;
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(day_file(&self.dir, day))?;
                self.open = Some((day, file));
            }
            serde_json::to_writer(&mut self.buf, &**event)?;
            self.buf.push(b'\n');
        }
        self.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some((_, file)) = self.open.as_mut() {
            file.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_point_is_the_last_whole_line_and_a_torn_one_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resume_point(dir.path()).unwrap(), 0);
        let old = day_file(dir.path(), NaiveDate::from_ymd_opt(2026, 11, 22).unwrap());
        std::fs::write(&old, "{\"seq\":1}\n{\"seq\":2}\n").unwrap();
        let new = day_file(dir.path(), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        std::fs::write(&new, "{\"seq\":3}\n{\"seq\":4}\n{\"seq\":5,\"ev").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(resume_point(dir.path()).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(&new).unwrap(),
            "{\"seq\":3}\n{\"seq\":4}\n"
        );
        // A newest file holding only a torn line: the one before tells.
        let newest = day_file(dir.path(), NaiveDate::from_ymd_opt(2026, 11, 24).unwrap());
        std::fs::write(&newest, "{\"seq\":5,\"ev").unwrap();
        assert_eq!(resume_point(dir.path()).unwrap(), 4);
        assert_eq!(std::fs::read(&newest).unwrap(), b"");
        std::fs::remove_file(&newest).unwrap();
        assert_eq!(
            days(dir.path())
                .unwrap()
                .iter()
                .map(|d| d.0.to_string())
                .collect::<Vec<_>>(),
            ["2026-11-22", "2026-11-23"]
        );
    }
}
