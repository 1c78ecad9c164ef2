//! `trailwatch migrate --to URL`: an SQLite data directory copied into an empty PostgreSQL
//! database, then verified there; and `trailwatch verify --database URL`, the chain in
//! PostgreSQL walked with a progress bar and checked against its signed checkpoints.

use crate::store::checkpoint::{self, CheckpointError};
use crate::store::postgres;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use tokio_postgres::NoTls;

/// Copies `data_dir` into the database at `url` and verifies the copy with the directory's
/// public key.
pub async fn migrate(data_dir: &Path, url: &str) -> ExitCode {
    let tty = std::io::stderr().is_terminal();
    let total = if tty {
        crate::store::stored_count(&data_dir.join(crate::store::DB_FILE)).unwrap_or(0)
    } else {
        0
    };
    let mut progress = |n: u64| {
        if tty {
            eprint!("\rcopying {}", crate::store::progress_bar(n, total));
        }
    };
    let copied = postgres::copy_sqlite(data_dir, url, &mut progress).await;
    if tty {
        eprintln!();
    }
    match copied {
        Ok(r) => println!(
            "copied {} events (head seq {}), {} data subjects, {} signed checkpoints and {} \
             retention records into the database",
            r.events, r.head_seq, r.subjects, r.checkpoints, r.retention_runs
        ),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "verifying the copy; give every node the signing key {} (checkpoints are signed with \
         it), and keep {} to verify with",
        data_dir.join(checkpoint::KEY_FILE).display(),
        data_dir.join(checkpoint::PUBLIC_KEY_FILE).display()
    );
    verify_database(url, &data_dir.join(checkpoint::PUBLIC_KEY_FILE)).await
}

/// Verifies the chain in the database at `url` against its stored checkpoints, whose
/// signatures (and the retention records') are checked with the public key at `public_key`.
pub async fn verify_database(url: &str, public_key: &Path) -> ExitCode {
    let (mut client, connection) = match tokio_postgres::connect(url, NoTls).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot reach {}: {e}", redact(url));
            return ExitCode::from(2);
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "verify session ended");
        }
    });
    let checkpoints = match postgres::stored_checkpoints(&client).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let key = match checkpoint::read_public_key(public_key) {
        Ok(key) => Some(key),
        // Without checkpoints or retention records there is nothing a key would check.
        Err(CheckpointError::Io { .. }) if checkpoints.is_empty() => None,
        Err(e) => {
            println!("checkpoints UNTRUSTED: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(key) = &key {
        if let Err(detail) = checkpoint::all_signed_by(&checkpoints, key) {
            println!("checkpoints UNTRUSTED: {detail}");
            return ExitCode::FAILURE;
        }
    }
    let tty = std::io::stderr().is_terminal();
    let total: u64 = match client
        .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
        .await
    {
        Ok(r) => r.get::<_, i64>(0).max(0) as u64,
        Err(_) => 0,
    };
    let mut progress = |n: u64| {
        if tty {
            eprint!("\r{}", crate::store::progress_bar(n, total));
        }
    };
    let result = postgres::verify(&mut client, &checkpoints, key.as_ref(), &mut progress).await;
    if tty {
        eprint!("\r{:width$}\r", "", width = 60);
    }
    super::verdict(result)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.parse::<reqwest::Url>() {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
