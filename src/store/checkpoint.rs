//! Signed checkpoints of the chain's head: what makes truncation detectable. A hash chain
//! alone cannot tell "the newest rows were deleted" from "no more events came", so at least
//! every [`EVERY_EVENTS`] events, or [`EVERY`] when fewer arrive, a thread of its own signs
//! the head (seq and hash) with an Ed25519 key and appends it to a log file. The key lives in
//! the data directory apart from the database; the log and the public key are meant to be
//! shipped off the machine, and `trailwatch verify` checks the chain against every entry.

use chrono::{SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// The signing key (32 bytes, hex), readable by its owner only.
pub const KEY_FILE: &str = "checkpoint.key";
/// The public key (32 bytes, hex): ship it with the log.
pub const PUBLIC_KEY_FILE: &str = "checkpoint.pub";
/// The checkpoint log: one JSON object per line.
pub const LOG_FILE: &str = "checkpoints.log";
/// A checkpoint is signed at every seq that is a multiple of this...
pub const EVERY_EVENTS: u64 = 1_000;
/// ...and for the head, when newer than the last checkpoint, at least this often.
pub const EVERY: Duration = Duration::from_secs(60);

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: u64,
    /// The hash of the event at `seq`, hex.
    pub hash: String,
    /// When it was signed (RFC 3339, milliseconds, UTC), exactly as signed.
    pub signed_at: String,
    /// Ed25519 over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed: versioned, so the format can change without ambiguity.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "trailwatch checkpoint v1\nseq {}\nhash {}\nsigned_at {}\n",
            self.seq, self.hash, self.signed_at
        )
        .into_bytes()
    }

    /// A checkpoint of `(seq, hash)` signed now with `key`.
    pub fn sign(key: &SigningKey, seq: u64, hash: &[u8; 32]) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            seq,
            hash: hex::encode(hash),
            signed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            signature: String::new(),
        };
        checkpoint.signature = hex::encode(key.sign(&checkpoint.message()).to_bytes());
        checkpoint
    }

    /// Whether `key` signed this checkpoint.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&self.message(), &signature).is_ok()
    }
}

/// Problems with the key or the log, named for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_hex32(path: &Path) -> Result<[u8; 32], CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| CheckpointError::Invalid {
            path: path.to_path_buf(),
            detail: "expected 32 bytes as 64 hex digits".into(),
        })
}

/// Reads a public key file (64 hex digits).
///
/// # Errors
/// The file is missing or holds no valid key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, CheckpointError> {
    let bytes = read_hex32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| CheckpointError::Invalid {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Reads every checkpoint of a log, in file order.
///
/// # Errors
/// The file cannot be read, or a line is not a checkpoint (named by its number). A last line
/// without its newline is the trace of a crash mid-append and is left out.
pub fn read_log(path: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut out = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_error(path))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint =
            serde_json::from_str(&line).map_err(|e| CheckpointError::Invalid {
                path: path.to_path_buf(),
                detail: format!("line {number}: {e}"),
            })?;
        out.push(checkpoint);
    }
    Ok(out)
}

/// The checkpoints of the log at `log`, each checked against the public key at `key`. With
/// `required` false, a missing log means no checkpoints (a store that never signed one).
///
/// # Errors
/// The files cannot be read, a line is not a checkpoint, or one is not signed by the key.
pub fn trusted(log: &Path, key: &Path, required: bool) -> Result<Vec<Checkpoint>, CheckpointError> {
    if !required && !log.exists() {
        return Ok(Vec::new());
    }
    let checkpoints = read_log(log)?;
    let key = read_public_key(key)?;
    all_signed_by(&checkpoints, &key).map_err(|detail| CheckpointError::Invalid {
        path: log.to_path_buf(),
        detail,
    })?;
    Ok(checkpoints)
}

/// Whether every checkpoint is signed by `key`; `Err` names the first that is not.
///
/// # Errors
/// The first checkpoint not signed by `key`.
pub fn all_signed_by(checkpoints: &[Checkpoint], key: &VerifyingKey) -> Result<(), String> {
    match checkpoints.iter().position(|c| !c.signed_by(key)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "the checkpoint for seq {} (entry {}) is not signed by this public key",
            checkpoints[i].seq,
            i + 1
        )),
    }
}

/// The data directory's signing key, which [`Signer::open`] created: retention signs its
/// records with it too.
///
/// # Errors
/// The key file is missing or unreadable.
pub fn signing_key(data_dir: &Path) -> Result<SigningKey, CheckpointError> {
    Ok(SigningKey::from_bytes(&read_hex32(
        &data_dir.join(KEY_FILE),
    )?))
}

/// The signing key in the file at `path` (64 hex digits): a cluster's, given to every node.
///
/// # Errors
/// The file is missing, unreadable or not a key.
pub fn signing_key_at(path: &Path) -> Result<SigningKey, CheckpointError> {
    Ok(SigningKey::from_bytes(&read_hex32(path)?))
}

/// Signs heads into the log of one data directory.
pub struct Signer {
    key: SigningKey,
    log: std::fs::File,
    log_path: PathBuf,
    /// The newest seq in the log.
    last_seq: u64,
}

impl Signer {
    /// Opens the data directory's key (creating it, and its public half, on first use) and
    /// log.
    ///
    /// # Errors
    /// The key or log cannot be read or created.
    pub fn open(data_dir: &Path) -> Result<Signer, CheckpointError> {
        let key_path = data_dir.join(KEY_FILE);
        let key = if key_path.exists() {
            SigningKey::from_bytes(&read_hex32(&key_path)?)
        } else {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| std::io::Error::other(e.to_string()))
                .map_err(io_error(&key_path))?;
            crate::files::write_private(&key_path, &hex::encode(seed))
                .map_err(io_error(&key_path))?;
            SigningKey::from_bytes(&seed)
        };
        let public_path = data_dir.join(PUBLIC_KEY_FILE);
        let public = hex::encode(key.verifying_key().to_bytes());
        let current = std::fs::read_to_string(&public_path).unwrap_or_default();
        if current.trim() != public {
            std::fs::write(&public_path, format!("{public}\n")).map_err(io_error(&public_path))?;
        }
        let log_path = data_dir.join(LOG_FILE);
        let last_seq = match read_log(&log_path) {
            Ok(log) => log.iter().map(|c| c.seq).max().unwrap_or(0),
            Err(CheckpointError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(&log_path))?;
        Ok(Signer {
            key,
            log,
            log_path,
            last_seq,
        })
    }

    /// The newest seq the log holds a checkpoint for.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Signs `(seq, hash)` and appends it to the log, durably.
    ///
    /// # Errors
    /// The log cannot be written.
    pub fn sign(&mut self, seq: u64, hash: &[u8; 32]) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = Checkpoint::sign(&self.key, seq, hash);
        let mut line =
            serde_json::to_string(&checkpoint).map_err(|e| CheckpointError::Invalid {
                path: self.log_path.clone(),
                detail: e.to_string(),
            })?;
        line.push('\n');
        // One write of the whole line: a crash leaves at most a partial last line, which
        // `read_log` skips.
        self.log
            .write_all(line.as_bytes())
            .and_then(|()| self.log.sync_data())
            .map_err(io_error(&self.log_path))?;
        self.last_seq = self.last_seq.max(seq);
        Ok(checkpoint)
    }
}

/// A committed position the writer reports: the head after a commit, or a seq on an
/// [`EVERY_EVENTS`] boundary inside it.
#[derive(Clone, Copy, Debug)]
pub struct Position {
    pub seq: u64,
    pub hash: [u8; 32],
    /// Sign it now rather than within the minute (a clean stop asks for this).
    pub urgent: bool,
}

/// The signing thread's handles: where to send positions, the newest seq signed, and the
/// thread itself (it signs what is pending and ends once every sender is gone).
pub type Spawned = (
    SyncSender<Position>,
    tokio::sync::watch::Receiver<u64>,
    std::thread::JoinHandle<()>,
);

/// Starts the signing thread; the writer sends it positions after each commit. The watch
/// follows the newest seq signed.
///
/// # Errors
/// The key or log cannot be opened, or the thread cannot start.
pub fn spawn(data_dir: &Path) -> Result<Spawned, CheckpointError> {
    let signer = Signer::open(data_dir)?;
    let (signed_tx, signed) = tokio::sync::watch::channel(signer.last_seq());
    // Positions are small and rare (a few per commit); a full queue means the thread is
    // stuck, and the next boundary or head will be signed once it moves.
    let (tx, rx) = std::sync::mpsc::sync_channel(4096);
    let thread = std::thread::Builder::new()
        .name("trailwatch-checkpoint".into())
        .spawn(move || run(signer, rx, signed_tx))
        .map_err(io_error(data_dir))?;
    Ok((tx, signed, thread))
}

fn run(mut signer: Signer, rx: Receiver<Position>, signed: tokio::sync::watch::Sender<u64>) {
    let mut pending: Option<Position> = None;
    let mut signed_at = Instant::now();
    let sign = |signer: &mut Signer, p: Position, signed_at: &mut Instant| {
        if p.seq <= signer.last_seq() {
            // Already signed (a restart reports its head again).
            return;
        }
        match signer.sign(p.seq, &p.hash) {
            Ok(_) => {
                *signed_at = Instant::now();
                signed.send_replace(signer.last_seq());
            }
            Err(e) => tracing::error!(error = %e, seq = p.seq, "could not sign a checkpoint"),
        }
    };
    loop {
        let next = match pending {
            Some(_) => rx.recv_timeout(EVERY.saturating_sub(signed_at.elapsed())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(p) if p.urgent || p.seq % EVERY_EVENTS == 0 => {
                sign(&mut signer, p, &mut signed_at);
                pending = pending.filter(|q| q.seq > p.seq);
            }
            Ok(p) => {
                if p.seq > signer.last_seq() {
                    pending = Some(p);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(p) = pending.take() {
                    sign(&mut signer, p, &mut signed_at);
                }
                break;
            }
        }
        if let Some(p) = pending {
            if signed_at.elapsed() >= EVERY {
                sign(&mut signer, p, &mut signed_at);
                pending = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_any_change_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut signer = Signer::open(dir.path()).unwrap();
        let c = signer.sign(1_000, &[7u8; 32]).unwrap();
        let key = read_public_key(&dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert!(c.signed_by(&key));
        for forged in [
            Checkpoint {
                seq: 999,
                ..c.clone()
            },
            Checkpoint {
                hash: hex::encode([8u8; 32]),
                ..c.clone()
            },
            Checkpoint {
                signed_at: "2020-01-01T00:00:00.000Z".into(),
                ..c.clone()
            },
            Checkpoint {
                signature: "00".repeat(64),
                ..c.clone()
            },
        ] {
            assert!(!forged.signed_by(&key), "{forged:?}");
        }
        assert_eq!(
            trusted(
                &dir.path().join(LOG_FILE),
                &dir.path().join(PUBLIC_KEY_FILE),
                true
            )
            .unwrap(),
            vec![c]
        );
    }

    #[test]
    fn the_key_is_private_and_kept_and_the_log_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut signer = Signer::open(dir.path()).unwrap();
        signer.sign(5, &[1u8; 32]).unwrap();
        let public = std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(signer);
        let mut signer = Signer::open(dir.path()).unwrap();
        assert_eq!(signer.last_seq(), 5);
        signer.sign(9, &[2u8; 32]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap(),
            public
        );
        let log = read_log(&dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(log.iter().map(|c| c.seq).collect::<Vec<_>>(), [5, 9]);
    }

    #[test]
    fn a_partial_last_line_is_left_out_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut signer = Signer::open(dir.path()).unwrap();
        signer.sign(1, &[1u8; 32]).unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"hash\":\"ab");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_log(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[tokio::test]
    async fn boundaries_are_signed_at_once_and_the_head_when_the_writer_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut signed, _thread) = spawn(dir.path()).unwrap();
        let at = |seq| Position {
            seq,
            hash: [seq as u8; 32],
            urgent: false,
        };
        tx.send(at(999)).unwrap();
        tx.send(at(1_000)).unwrap();
        signed.wait_for(|&s| s == 1_000).await.unwrap();
        tx.send(at(1_003)).unwrap();
        drop(tx);
        signed.wait_for(|&s| s == 1_003).await.unwrap();
        let log = read_log(&dir.path().join(LOG_FILE)).unwrap();
        // 999 was superseded by the boundary before a minute passed.
        assert_eq!(
            log.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1_000, 1_003]
        );
        assert_eq!(log[1].hash, hex::encode([1_003u64 as u8; 32]));
    }
}
