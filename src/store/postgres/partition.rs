//! The monthly partitions of `events`, by arrival time (`received_at`, which never goes back:
//! see `chain_head`). Each node makes sure the month it appends in and the next exist before
//! it needs them, so an append never waits for a table to be created, and retention can drop
//! a whole month at once.

use super::PgError;
use chrono::{DateTime, Datelike, NaiveDate};
use tokio_postgres::Client;

/// How long before the end of the months already made the next is made.
pub const AHEAD_MS: i64 = 7 * 24 * 3600 * 1000;

/// The advisory lock partition making holds, so nodes take turns (`trailwpt` in ASCII).
const LOCK: i64 = 0x7472_6169_6c77_7074;

/// The first millisecond of the month `months` after the one holding `ms` (UTC).
fn month_start(ms: i64, months: u32) -> Option<(NaiveDate, i64)> {
    let at = DateTime::from_timestamp_millis(ms)?;
    let mut first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1)?;
    for _ in 0..months {
        first = first.checked_add_months(chrono::Months::new(1))?;
    }
    let start = first.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some((first, start))
}

/// The partition for the month holding `ms`: its name and bounds `[from, to)`.
fn partition_of(ms: i64) -> Option<(String, i64, i64)> {
    let (first, from) = month_start(ms, 0)?;
    let (_, to) = month_start(ms, 1)?;
    Some((
        format!("events_{:04}_{:02}", first.year(), first.month()),
        from,
        to,
    ))
}

/// The statistics target of each month's words (see migration 11).
const WORDS_STATISTICS: u32 = 400;

/// Makes the partitions for the month holding `at_ms` and the one after; returns where they
/// end (the first millisecond they do not cover). Safe when several nodes do it at once.
///
/// # Errors
/// Database errors.
pub async fn ensure(client: &mut Client, at_ms: i64) -> Result<i64, PgError> {
    ensure_range(client, at_ms, at_ms).await
}

/// [`ensure`] for every month from the one holding `from_ms` through the one after `to_ms`'s:
/// what a copy of older events needs.
///
/// # Errors
/// Database errors.
pub async fn ensure_range(client: &mut Client, from_ms: i64, to_ms: i64) -> Result<i64, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let mut at = from_ms;
    let mut end = from_ms;
    // Through the month after `to_ms`, so appends find it made a week before they need it.
    let last = month_start(to_ms, 1).map_or(to_ms, |(_, start)| start);
    while at <= last {
        let Some((name, from, to)) = partition_of(at) else {
            break;
        };
        // Names and bounds are ours (digits), never a sender's.
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events
                 FOR VALUES FROM ({from}) TO ({to});
             ALTER TABLE {name} ALTER COLUMN words SET STATISTICS {WORDS_STATISTICS}"
        ))
        .await?;
        end = to;
        at = to;
    }
    tx.commit().await?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::{month_start, partition_of};

    #[test]
    fn a_partition_is_one_utc_month() {
        // 2026-12-06T21:00:00Z
        let (name, from, to) = partition_of(1_796_590_800_000).unwrap();
        assert_eq!(name, "events_2026_12");
        assert_eq!(from, 1_796_083_200_000); // 2026-12-01T00:00:00Z
        assert_eq!(to, 1_798_761_600_000); // 2027-01-01T00:00:00Z
        assert_eq!(partition_of(to).unwrap().0, "events_2027_01");
        assert_eq!(partition_of(to - 1).unwrap().0, "events_2026_12");
        assert_eq!(month_start(from, 2).unwrap().1, 1_801_440_000_000); // 2027-02-01
    }
}
