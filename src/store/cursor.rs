//! Where each tailed file was read up to. A cursor is written in the same transaction as the
//! events read from the lines before it, so after a crash the stored events and the cursor
//! agree: a restart resumes exactly after the last stored line, neither skipping nor repeating.
//! Each backend keeps them its own way (`sqlite::cursor`; PostgreSQL per node).

/// A position in a tailed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCursor {
    /// The tail's name: the path as configured.
    pub source: String,
    /// The file's identity (device and inode): a different pair at the same path means the
    /// file was rotated.
    pub dev: u64,
    pub ino: u64,
    /// The byte just after the last line stored.
    pub offset: u64,
    /// SHA-256 of the last line stored (with its newline), and its length: if the bytes
    /// before `offset` no longer hash to it, the file was truncated and rewritten.
    pub fingerprint: [u8; 32],
    pub fp_len: u64,
    /// Lines stored from this file so far (for line numbers in events).
    pub lines: u64,
}
