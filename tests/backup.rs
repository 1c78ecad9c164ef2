//! `trailwatch backup`: a copy taken while a real server ingests restores into a server of
//! its own, holds every event acknowledged before the copy began, and verifies, checkpoints
//! included.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{batch, TestServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trailwatch::cli::backup::{backup, BackupError};
use trailwatch::store::{checkpoint, verify_path, DB_FILE};

#[tokio::test]
async fn a_backup_taken_under_ingest_restores_and_verifies() {
    let s = TestServer::start().await;
    // Enough for signed checkpoints (one per 1,000 events) before the copy starts.
    for i in 0..6 {
        let (status, body) = s.post(&batch(&format!("before-{i}"), 500)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, head) = s.get("/api/v1/events?limit=1").await;
    let acknowledged = head["headSeq"].as_u64().unwrap();

    // Ingest goes on while the copy is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let (going_tx, mut going) = tokio::sync::watch::channel(false);
    let ingest = {
        let stop = stop.clone();
        let url = s.url("/api/v1/events");
        let http = s.http.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = http
                    .post(&url)
                    .bearer_auth(common::TOKEN)
                    .json(&batch(&format!("during-{i}"), 200))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                let _ = going_tx.send(true);
                i += 1;
            }
        })
    };
    // The copy starts once ingest is under way, and ingest goes on until it ends.
    going.wait_for(|g| *g).await.unwrap();
    let data = s.dir.path().join("data");
    let dest = s.dir.path().join("copy");
    let (data_c, dest_c) = (data.clone(), dest.clone());
    let report = tokio::task::spawn_blocking(move || backup(&data_c, &dest_c, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    ingest.await.unwrap();
    let names: Vec<&str> = report.files.iter().map(|(n, _)| n.as_str()).collect();
    for file in [
        DB_FILE,
        "auth.db",
        checkpoint::LOG_FILE,
        checkpoint::KEY_FILE,
    ] {
        assert!(names.contains(&file), "{file} missing from {names:?}");
    }
    assert_eq!(names.last(), Some(&DB_FILE), "the events are taken last");

    // The copy verifies offline against the checkpoints it carries.
    let checkpoints = checkpoint::trusted(
        &dest.join(checkpoint::LOG_FILE),
        &dest.join(checkpoint::PUBLIC_KEY_FILE),
        true,
    )
    .unwrap();
    assert!(
        !checkpoints.is_empty(),
        "the copy carries signed checkpoints"
    );
    let key = checkpoint::read_public_key(&dest.join(checkpoint::PUBLIC_KEY_FILE)).unwrap();
    let report = verify_path(&dest.join(DB_FILE), &checkpoints, Some(&key), &mut |_| {}).unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.head_seq.0 >= acknowledged, "{report:?}");

    // Restored: a server on the copy holds every event acknowledged before the copy began.
    let mut restored = TestServer::start_with(|c| c.data_dir = dest.clone()).await;
    let (_, page) = restored.get("/api/v1/events?q=before").await;
    assert_eq!(page["total"], 3000, "{}", page["total"]);
    let (_, verified) = restored.get("/api/v1/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
    restored.stop().await;
}

#[tokio::test]
async fn a_backup_refuses_a_directory_without_data_or_a_destination_in_use() {
    let s = TestServer::start().await;
    let (status, _) = s.post(&batch("x", 3)).await;
    assert_eq!(status, 201);
    let data = s.dir.path().join("data");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        backup(empty.path(), &s.dir.path().join("out"), &mut |_| {}),
        Err(BackupError::NoData(_))
    ));
    let used = s.dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("keep.txt"), "mine").unwrap();
    assert!(matches!(
        backup(&data, &used, &mut |_| {}),
        Err(BackupError::NotEmpty(_))
    ));
    assert_eq!(
        std::fs::read_to_string(used.join("keep.txt")).unwrap(),
        "mine"
    );
}
