//! File tailing against real files and a real store: appends, a partial last line, rotation by
//! rename and by copy-truncate, a file created later, restarts at any point (also with the
//! file rotated or rewritten while stopped), inotify and polling. Every test asserts that
//! every line is stored exactly once, in order.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trailwatch::model::Seq;
use trailwatch::store::{Store, StoreOptions};
use trailwatch::tail::{TailOptions, TailSpec, Tailers};

struct Fixture {
    dir: tempfile::TempDir,
    store: Option<Store>,
    tailers: Option<Tailers>,
    options: TailOptions,
}

impl Fixture {
    fn new() -> Fixture {
        Self::with(TailOptions::default())
    }

    fn with(options: TailOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        Fixture {
            dir,
            store: None,
            tailers: None,
            options,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("logs").join("audit.log")
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// Opens the store (if closed) and starts tailing the log as text.
    fn start(&mut self) {
        if self.store.is_none() {
            let store = Store::open(&self.dir.path().join("data"), StoreOptions::default());
            self.store = Some(store.unwrap());
        }
        let spec: TailSpec = format!("{}:text", self.log().display()).parse().unwrap();
        let tailers = Tailers::start(
            self.store(),
            &[spec],
            &self.options,
            tokio::runtime::Handle::current(),
        );
        self.tailers = Some(tailers.unwrap());
    }

    /// Stops tailing and closes the store, as a stopping server does.
    async fn stop(&mut self) {
        if let Some(t) = self.tailers.take() {
            tokio::task::spawn_blocking(move || t.stop()).await.unwrap();
        }
        self.store = None;
    }

    /// Waits until `n` events are stored, then returns every stored event's description.
    async fn lines(&self, n: u64) -> Vec<String> {
        let mut head = self.store().head_watch();
        tokio::time::timeout(Duration::from_secs(20), head.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} lines were not stored in time"))
            .unwrap();
        self.stored().await
    }

    async fn stored(&self) -> Vec<String> {
        let events = self.store().read_from(Seq(0), 100_000).await.unwrap();
        events
            .into_iter()
            .map(|e| e.event.description.unwrap_or_default())
            .collect()
    }
}

fn line(n: usize) -> String {
    format!("[2026-11-23T10:00:{:02}Z] line {n}\n", n % 60)
}

fn lines(range: std::ops::RangeInclusive<usize>) -> String {
    range.map(line).collect()
}

fn expect(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("line {n}")).collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_lines_arrive_and_a_partial_line_waits_for_its_newline() {
    let mut fx = Fixture::new();
    append(&fx.log(), &lines(1..=3));
    fx.start();
    assert_eq!(fx.lines(3).await, expect(1..=3));
    // A line written in two pieces is one event, stored once its newline is there.
    append(&fx.log(), "[2026-11-23T10:00:04Z] li");
    append(&fx.log(), "ne 4\n");
    append(&fx.log(), &lines(5..=6));
    assert_eq!(fx.lines(6).await, expect(1..=6));
    let events = fx.store().read_from(Seq(0), 10).await.unwrap();
    assert!(events
        .iter()
        .all(|e| e.event.source.0 == format!("tail:{}", fx.log().display())));
    assert_eq!(
        events[3].event.timestamp.to_rfc3339(),
        "2026-11-23T10:00:04+00:00"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_later_is_read_from_its_start() {
    let mut fx = Fixture::new();
    fx.start();
    append(&fx.log(), &lines(1..=2));
    assert_eq!(fx.lines(2).await, expect(1..=2));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one() {
    let mut fx = Fixture::new();
    fx.start();
    append(&fx.log(), &lines(1..=3));
    assert_eq!(fx.lines(3).await, expect(1..=3));
    let rotated = fx.log().with_extension("log.1");
    std::fs::rename(fx.log(), &rotated).unwrap();
    // The program writes on into the renamed file, its last line without a newline...
    append(&rotated, &lines(4..=5));
    append(&rotated, "[2026-11-23T10:00:06Z] line 6");
    // ...until it reopens its log at the path.
    append(&fx.log(), &lines(7..=8));
    assert_eq!(fx.lines(8).await, expect(1..=8));
    // And the new file goes on.
    append(&fx.log(), &lines(9..=9));
    assert_eq!(fx.lines(9).await, expect(1..=9));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_copy_truncate_reads_the_file_again_from_its_start() {
    let mut fx = Fixture::new();
    fx.start();
    append(&fx.log(), &lines(1..=3));
    assert_eq!(fx.lines(3).await, expect(1..=3));
    std::fs::copy(fx.log(), fx.log().with_extension("log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(fx.log())
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&fx.log(), &lines(4..=4));
    assert_eq!(fx.lines(4).await, expect(1..=4));
    append(&fx.log(), &lines(5..=5));
    assert_eq!(fx.lines(5).await, expect(1..=5));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_last_stored_line() {
    let mut fx = Fixture::new();
    append(&fx.log(), &lines(1..=5));
    fx.start();
    assert_eq!(fx.lines(5).await, expect(1..=5));
    fx.stop().await;
    // Written while stopped, ending in half a line.
    append(&fx.log(), &lines(6..=7));
    append(&fx.log(), "[2026-11-23T10:00:08Z] line");
    fx.start();
    assert_eq!(fx.lines(7).await, expect(1..=7));
    fx.stop().await;
    append(&fx.log(), " 8\n");
    fx.start();
    assert_eq!(fx.lines(8).await, expect(1..=8));
    append(&fx.log(), &lines(9..=9));
    assert_eq!(fx.lines(9).await, expect(1..=9));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_stopped_finishes_the_old_file_first() {
    let mut fx = Fixture::new();
    append(&fx.log(), &lines(1..=2));
    fx.start();
    assert_eq!(fx.lines(2).await, expect(1..=2));
    fx.stop().await;
    append(&fx.log(), &lines(3..=4));
    std::fs::rename(fx.log(), fx.log().with_extension("log.1")).unwrap();
    append(&fx.log(), &lines(5..=6));
    fx.start();
    assert_eq!(fx.lines(6).await, expect(1..=6));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_truncated_and_rewritten_while_stopped_is_read_again() {
    let mut fx = Fixture::new();
    append(&fx.log(), &lines(1..=2));
    fx.start();
    assert_eq!(fx.lines(2).await, expect(1..=2));
    fx.stop().await;
    // Truncated in place (same inode) and written past the old offset: only the fingerprint
    // of the bytes before the offset tells.
    std::fs::OpenOptions::new()
        .write(true)
        .open(fx.log())
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&fx.log(), &lines(13..=16));
    fx.start();
    let mut want = expect(1..=2);
    want.extend(expect(13..=16));
    assert_eq!(fx.lines(6).await, want);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_finds_new_lines() {
    let mut fx = Fixture::with(TailOptions {
        notify: false,
        poll: Duration::from_millis(20),
        ..TailOptions::default()
    });
    fx.start();
    append(&fx.log(), &lines(1..=2));
    assert_eq!(fx.lines(2).await, expect(1..=2));
    std::fs::rename(fx.log(), fx.log().with_extension("log.1")).unwrap();
    append(&fx.log(), &lines(3..=3));
    assert_eq!(fx.lines(3).await, expect(1..=3));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_lines_are_stored_as_warnings_with_the_raw_line() {
    let mut fx = Fixture::new();
    append(&fx.log(), "not a timestamped line\n\n");
    append(&fx.log(), &lines(2..=2));
    fx.start();
    let stored = fx.lines(2).await;
    assert_eq!(stored.len(), 2, "the blank line is skipped: {stored:?}");
    let events = fx.store().read_from(Seq(0), 10).await.unwrap();
    let first = &events[0].event;
    assert_eq!(first.level, trailwatch::model::Level::Warning);
    assert_eq!(first.action, trailwatch::tail::parse::UNPARSED_ACTION);
    let meta = first.metadata.as_ref().unwrap();
    assert_eq!(meta["raw"], "not a timestamped line");
    assert_eq!(meta["line"], 1);
    assert_eq!(stored[1], "line 2");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_in_the_middle_of_a_backlog_loses_and_repeats_nothing() {
    let mut fx = Fixture::new();
    // About 4 MiB: several chunks, so the stop most likely lands between two of them.
    let n = 100_000;
    let mut text = String::with_capacity(n * 40);
    for i in 1..=n {
        text.push_str(&line(i));
    }
    append(&fx.log(), &text);
    fx.start();
    let mut head = fx.store().head_watch();
    head.wait_for(|h| *h >= 1).await.unwrap();
    fx.stop().await;
    fx.start();
    assert_eq!(fx.lines(n as u64).await, expect(1..=n));
    fx.stop().await;
}
