//! File sources: following log files as they grow (`serve --tail PATH[:jsonl|text]`).
//!
//! Each tailed file has a thread that reads complete lines from where the store's cursor says
//! it stopped, turns them into events (see [`parse`]) and appends them together with the new
//! cursor, in one transaction. The cursor holds the file's identity (device and inode), the
//! offset after the last stored line and a fingerprint of the bytes before that offset, so:
//!
//! - a restart resumes exactly after the last stored line;
//! - rotation by rename is seen as a new identity at the path: the old file is read to its end
//!   (its last line even without a newline, since nothing will finish it), then the new one
//!   from its start; a rename while Trailwatch was stopped is found again by its inode;
//! - rotation by copy-truncate is seen as a file shorter than the offset, or whose bytes before
//!   the offset no longer match the fingerprint: it is read again from its start;
//! - a file that does not exist yet is waited for, and a partial last line waits for its
//!   newline.
//!
//! The thread wakes on inotify events for the file's directory (the `notify` crate) and, as a
//! fallback for file systems that do not report changes, every poll interval.
//! Server build only.

pub mod parse;

use crate::model::Source;
use crate::store::cursor::TailCursor;
use crate::store::{Store, StoreError};
use chrono::Utc;
use parse::{event_for_line, LineFormat, Origin};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// A file to follow and how its lines are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailSpec {
    pub path: PathBuf,
    pub format: LineFormat,
}

impl std::str::FromStr for TailSpec {
    type Err = String;

    /// `PATH`, `PATH:jsonl` or `PATH:text`; without a suffix the extension decides.
    fn from_str(s: &str) -> Result<TailSpec, String> {
        let (path, format) = match s.rsplit_once(':') {
            Some((path, "jsonl")) => (path, Some(LineFormat::Jsonl)),
            Some((path, "text")) => (path, Some(LineFormat::Text)),
            _ => (s, None),
        };
        if path.trim().is_empty() {
            return Err(format!("tail {s:?}: the path is empty"));
        }
        let path = PathBuf::from(path);
        if path.file_name().is_none() {
            return Err(format!("tail {s:?}: the path names no file"));
        }
        let format = format.unwrap_or_else(|| LineFormat::guess(&path));
        Ok(TailSpec { path, format })
    }
}

impl TailSpec {
    /// The name its cursor is stored under and its events' source is made of.
    pub fn key(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The source of its events: `tail:<path>`.
    pub fn source(&self) -> Source {
        Source(format!("tail:{}", self.key()))
    }
}

/// How tailers wait for changes.
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// Whether to ask the kernel for change notifications.
    pub notify: bool,
    /// How often to look without being told (the fallback).
    pub poll: Duration,
    /// The times a line's event may carry.
    pub window: crate::ingest::TimeWindow,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            notify: true,
            poll: Duration::from_secs(1),
            window: crate::ingest::TimeWindow::default(),
        }
    }
}

/// The running tailers; [`Tailers::stop`] ends them.
pub struct Tailers {
    stop: Arc<AtomicBool>,
    wakers: Vec<mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Tailers {
    /// Starts a thread per spec. Appends go through `store`, on `runtime`.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn start(
        store: &Store,
        specs: &[TailSpec],
        options: &TailOptions,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Tailers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        for spec in specs {
            let (wake, woken) = mpsc::channel();
            let mut tail = Tail::new(spec.clone(), store.clone(), runtime.clone(), stop.clone());
            tail.ctx.window = options.window;
            let watcher = options
                .notify
                .then(|| watch_directory(&spec.path, wake.clone()))
                .flatten();
            let poll = options.poll;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("trailwatch-tail-{}", threads.len()))
                    .spawn(move || tail.run(&woken, poll, watcher))?,
            );
            wakers.push(wake);
        }
        Ok(Tailers {
            stop,
            wakers,
            threads,
        })
    }

    /// Stops every tailer and waits for it: what it read and stored is on disk, and the rest
    /// is read again by the next start.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for wake in &self.wakers {
            let _ = wake.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Watches the file's directory (the file itself may not exist, or be renamed away).
/// `None` where the kernel will not: polling remains.
fn watch_directory(path: &Path, wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = match notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = wake.send(());
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no change notifications; polling");
            return None;
        }
    };
    match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the directory; polling");
            None
        }
    }
}

/// The most read from a file per append.
const CHUNK: usize = 1 << 20;
/// A line longer than this is cut into pieces of this size (each kept, as an unreadable line).
pub const MAX_LINE: usize = CHUNK;
/// How many bytes before the offset the fingerprint covers.
const FINGERPRINT_BYTES: u64 = 256;

/// An open file and its identity.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
}

impl Open {
    fn at(path: &Path) -> std::io::Result<Option<Open>> {
        match File::open(path) {
            Ok(file) => {
                let meta = file.metadata()?;
                Ok(Some(Open {
                    file,
                    dev: meta.dev(),
                    ino: meta.ino(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn is(&self, cursor: &TailCursor) -> bool {
        self.dev == cursor.dev && self.ino == cursor.ino
    }
}

/// Why a pass over the file stopped early; it is retried at the next wake.
#[derive(Debug, thiserror::Error)]
enum TailError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What every pass over a file needs, apart from where it stands.
struct Ctx {
    spec: TailSpec,
    key: String,
    source: Source,
    store: Store,
    runtime: tokio::runtime::Handle,
    /// Set when the server stops: a long backlog is left between two chunks.
    stop: Arc<AtomicBool>,
    window: crate::ingest::TimeWindow,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// How long a file renamed away is still read after a new, empty one took its place: the
/// writing program may not have reopened its log yet.
const ROTATION_GRACE: Duration = Duration::from_secs(5);

/// One followed file.
struct Tail {
    ctx: Ctx,
    /// What the store holds as read (updated only after an append succeeds).
    cursor: Option<TailCursor>,
    /// Whether the stored cursor has been loaded.
    loaded: bool,
    open: Option<Open>,
    /// When a new file was first seen at the path while the old one was still read.
    rotated_since: Option<std::time::Instant>,
}

impl Tail {
    fn new(
        spec: TailSpec,
        store: Store,
        runtime: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
    ) -> Tail {
        Tail {
            ctx: Ctx {
                key: spec.key(),
                source: spec.source(),
                spec,
                store,
                runtime,
                stop,
                window: crate::ingest::TimeWindow::default(),
            },
            cursor: None,
            loaded: false,
            open: None,
            rotated_since: None,
        }
    }

    fn run(
        mut self,
        woken: &mpsc::Receiver<()>,
        poll: Duration,
        _watcher: Option<notify::RecommendedWatcher>,
    ) {
        let path = self.ctx.spec.path.clone();
        tracing::info!(path = %path.display(), format = self.ctx.spec.format.as_str(), "tailing");
        let mut failing = false;
        while !self.ctx.stopping() {
            match self.pass() {
                Ok(()) => failing = false,
                Err(e) => {
                    // Logged once per failing spell, not at every poll.
                    if !failing {
                        tracing::warn!(path = %path.display(), error = %e, "tailing paused; retrying");
                    }
                    failing = true;
                }
            }
            let _ = woken.recv_timeout(poll);
            // Many notifications may have queued; one pass reads everything they announce.
            while woken.try_recv().is_ok() {}
        }
    }

    /// Reads everything there is to read now, following a rotation if there was one.
    fn pass(&mut self) -> Result<(), TailError> {
        if !self.loaded {
            self.cursor = self
                .ctx
                .runtime
                .block_on(self.ctx.store.tail_cursor(&self.ctx.key))?;
            self.loaded = true;
        }
        while !self.ctx.stopping() {
            let Some(open) = self.open.as_mut() else {
                match Open::at(&self.ctx.spec.path)? {
                    None => return Ok(()),
                    Some(found) => {
                        self.adopt(found)?;
                        continue;
                    }
                }
            };
            if !read_lines(&self.ctx, open, &mut self.cursor, false)? {
                return Ok(());
            }
            // Everything complete is read; was the file replaced at its path meanwhile?
            let (dev, ino) = (open.dev, open.ino);
            match Open::at(&self.ctx.spec.path)? {
                Some(now) if now.dev == dev && now.ino == ino => return Ok(()),
                // Renamed away and not yet re-created: the writer may still be writing to it.
                None => return Ok(()),
                Some(now) => {
                    let since = *self
                        .rotated_since
                        .get_or_insert_with(std::time::Instant::now);
                    if now.file.metadata()?.len() == 0 && since.elapsed() < ROTATION_GRACE {
                        return Ok(());
                    }
                    self.rotated_since = None;
                    if let Some(mut old) = self.open.take() {
                        if !read_lines(&self.ctx, &mut old, &mut self.cursor, true)? {
                            // Stopped part way: the next start finishes the old file.
                            return Ok(());
                        }
                    }
                    self.cursor = Some(start_of(&self.ctx, &now));
                    self.open = Some(now);
                }
            }
        }
        Ok(())
    }

    /// Takes `found`, at the path, as the file to read: where the stored cursor points if it
    /// is the same file; otherwise after finishing the file the cursor was in, if it can still
    /// be found (rotated while Trailwatch was stopped).
    fn adopt(&mut self, found: Open) -> Result<(), TailError> {
        let path = &self.ctx.spec.path;
        match &self.cursor {
            Some(c) if found.is(c) => {}
            Some(c) => {
                if let Some(mut old) = find_by_identity(path, c.dev, c.ino) {
                    tracing::info!(path = %path.display(), "the file was rotated; reading the rest of the old one first");
                    if !read_lines(&self.ctx, &mut old, &mut self.cursor, true)? {
                        return Ok(());
                    }
                } else {
                    tracing::warn!(
                        path = %path.display(),
                        "the file was replaced and the old one is gone; reading the new one from its start"
                    );
                }
                self.cursor = Some(start_of(&self.ctx, &found));
            }
            None => self.cursor = Some(start_of(&self.ctx, &found)),
        }
        self.open = Some(found);
        Ok(())
    }
}

/// A cursor at the start of `open`. It is stored with the first lines read from the file;
/// until then a restart finds the previous cursor and comes to this same decision.
fn start_of(ctx: &Ctx, open: &Open) -> TailCursor {
    TailCursor {
        source: ctx.key.clone(),
        dev: open.dev,
        ino: open.ino,
        offset: 0,
        fingerprint: [0; 32],
        fp_len: 0,
        lines: 0,
    }
}

/// The file in the path's directory with this identity (a rotated copy, `audit.log.1`).
fn find_by_identity(path: &Path, dev: u64, ino: u64) -> Option<Open> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == ino)
        })
        .find_map(|entry| Open::at(&entry.path()).ok().flatten())
        .filter(|open| open.dev == dev && open.ino == ino)
}

/// Whether the `len` bytes before `offset` still hash to `expected`.
fn fingerprint_holds(
    file: &mut File,
    offset: u64,
    len: u64,
    expected: &[u8; 32],
) -> std::io::Result<bool> {
    let mut buf = vec![0; len as usize];
    file.seek(SeekFrom::Start(offset - len))?;
    match file.read_exact(&mut buf) {
        Ok(()) => Ok(Sha256::digest(&buf).as_slice() == expected),
        // Shorter than the offset after all: truncated since the length was read.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Appends every complete line of `open` after the cursor (with `to_end`, also a last line
/// without newline), a chunk per transaction, each with the cursor after it. If the file no
/// longer holds what the cursor says was read (copy-truncate), it is read from its start.
/// Returns false if it stopped part way because the server is stopping.
fn read_lines(
    ctx: &Ctx,
    open: &mut Open,
    cursor: &mut Option<TailCursor>,
    to_end: bool,
) -> Result<bool, TailError> {
    let here = match cursor.as_ref() {
        Some(c) if open.is(c) => c.clone(),
        _ => start_of(ctx, open),
    };
    let len = open.file.metadata()?.len();
    let intact = len >= here.offset
        && (here.fp_len == 0
            || fingerprint_holds(&mut open.file, here.offset, here.fp_len, &here.fingerprint)?);
    let (mut offset, mut lines) = (here.offset, here.lines);
    if !intact {
        tracing::info!(path = %ctx.spec.path.display(), "the file was truncated; reading it from its start");
        (offset, lines) = (0, 0);
        *cursor = Some(start_of(ctx, open));
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        if ctx.stopping() {
            return Ok(false);
        }
        open.file.seek(SeekFrom::Start(offset))?;
        let mut filled = 0;
        while filled < buf.len() {
            match open.file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        let data = &buf[..filled];
        // The complete lines; a line longer than the buffer is taken as it is, cut.
        let (take, cut_last) = match data.iter().rposition(|b| *b == b'\n') {
            Some(end) => (end + 1, false),
            None if filled == buf.len() => (filled, true),
            None if to_end && filled > 0 => (filled, false),
            None => return Ok(true),
        };
        let clock = ctx.window.at(Utc::now());
        let mut events = Vec::new();
        let mut pieces = data[..take].split_inclusive(|b| *b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            lines += 1;
            let line = piece.strip_suffix(b"\n").unwrap_or(piece);
            let cut = cut_last && pieces.peek().is_none();
            let origin = Origin {
                source: &ctx.source,
                file: &ctx.key,
                line: lines,
            };
            events.extend(event_for_line(line, ctx.spec.format, &origin, cut, clock));
        }
        let fp_len = (FINGERPRINT_BYTES as usize).min(take);
        let next = TailCursor {
            source: ctx.key.clone(),
            dev: open.dev,
            ino: open.ino,
            offset: offset + take as u64,
            fingerprint: Sha256::digest(&data[take - fp_len..take]).into(),
            fp_len: fp_len as u64,
            lines,
        };
        ctx.runtime
            .block_on(ctx.store.append_tailed(events, next.clone()))?;
        offset = next.offset;
        *cursor = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_take_an_optional_format() {
        let s: TailSpec = "/var/log/audit.jsonl".parse().unwrap();
        assert_eq!(s.format, LineFormat::Jsonl);
        let s: TailSpec = "/var/log/audit.log".parse().unwrap();
        assert_eq!(s.format, LineFormat::Text);
        let s: TailSpec = "/var/log/audit.log:jsonl".parse().unwrap();
        assert_eq!(
            (s.path.to_str(), s.format),
            (Some("/var/log/audit.log"), LineFormat::Jsonl)
        );
        let s: TailSpec = "C:x.jsonl:text".parse().unwrap();
        assert_eq!(
            (s.path.to_str(), s.format),
            (Some("C:x.jsonl"), LineFormat::Text)
        );
        assert!(":jsonl".parse::<TailSpec>().is_err());
        assert_eq!(s.source().0, "tail:C:x.jsonl");
    }
}
