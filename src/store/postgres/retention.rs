//! Retention on PostgreSQL, with SQLite's rules and records (`store::retention`): expired
//! events are removed a chunk at a time, each chunk under a retention record signed with the
//! cluster's key that lists the seq ranges it removed, so the chain still verifies across the
//! gap; the running totals lose them and the rollups of their hours are counted again.
//!
//! A month partition whose events have all expired and hold one unbroken run of seqs is
//! dropped whole, under one record, instead of being deleted row by row: that is what the
//! partitioning is for. Each step holds the chain's lock, so appends on every node wait for one
//! chunk, not for the run, and never race the recount of an hour.

use crate::store::chain::Hash32;
use crate::store::retention::{
    doomed_runs, now_text, signed_record, Doomed, Pruned, PrunedRange, RetentionPolicy, CHUNK,
};
use crate::store::StoreError;
use ed25519_dalek::SigningKey;
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::{Client, GenericClient, Transaction};

/// `floor(column / n)`, also for negative times (PostgreSQL's `/` truncates towards zero).
fn floor_div(column: &str, n: i64) -> String {
    format!("(({column}) - ((({column}) % {n}) + {n}) % {n}) / {n}")
}

fn hash32(v: Vec<u8>, seq: i64) -> Result<Hash32, StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        seq: seq.max(0) as u64,
        detail: "stored hash is not 32 bytes".into(),
    })
}

/// Removes every expired event; returns what it removed.
///
/// # Errors
/// Database errors; the chunks committed before stay removed (each is whole and signed).
pub async fn prune(
    client: &mut Client,
    key: &SigningKey,
    policy: &RetentionPolicy,
    now_ms: i64,
) -> Result<Pruned, StoreError> {
    let mut out = Pruned::default();
    drop_expired_partitions(client, key, policy, now_ms, &mut out).await?;
    loop {
        let tx = client.transaction().await?;
        let head: i64 = tx
            .query_one("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE", &[])
            .await?
            .get(0);
        let (doomed, more) = expired_rows(&tx, policy, now_ms, head).await?;
        if doomed.is_empty() {
            tx.commit().await?;
            break;
        }
        let Doomed { seqs, span, runs } = doomed_runs(doomed);
        let ranges = ranges_of(&tx, &runs).await?;
        let as_i64: Vec<i64> = seqs.iter().map(|&s| s as i64).collect();
        record(&tx, key, &ranges, seqs.len() as u64).await?;
        uncount(&tx, "events WHERE seq = ANY($1)", &[&as_i64]).await?;
        tx.execute("DELETE FROM events WHERE seq = ANY($1)", &[&as_i64])
            .await?;
        rebuild_span(&tx, span.0, span.1).await?;
        tx.commit().await?;
        out.events += seqs.len() as u64;
        out.ranges += ranges.len() as u64;
        out.records += 1;
        out.seqs.extend(seqs);
        if !more {
            break;
        }
    }
    if out.events > 0 {
        tracing::info!(
            events = out.events,
            ranges = out.ranges,
            "retention removed expired events"
        );
    }
    Ok(out)
}

/// Up to [`CHUNK`] expired events (seq and event time) older than the head, and whether more
/// have expired.
async fn expired_rows(
    tx: &Transaction<'_>,
    policy: &RetentionPolicy,
    now_ms: i64,
    head: i64,
) -> Result<(Vec<(u64, i64)>, bool), StoreError> {
    let horizon = policy.horizon(now_ms);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&horizon, &head];
    let rows = tx
        .query_raw(
            "SELECT seq, ts, level, category FROM events WHERE ts < $1 AND seq < $2
             ORDER BY ts",
            params,
        )
        .await?;
    pin_mut!(rows);
    let mut doomed = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let ts: i64 = row.get(1);
        let (level, category): (String, String) = (row.get(2), row.get(3));
        if policy.expired(ts, &level, &category, now_ms) {
            if doomed.len() == CHUNK {
                return Ok((doomed, true));
            }
            doomed.push((row.get::<_, i64>(0).max(0) as u64, ts));
        }
    }
    Ok((doomed, false))
}

/// The ranges of `runs`: each with the hash before its first seq and of its last.
async fn ranges_of(
    tx: &impl GenericClient,
    runs: &[(u64, u64)],
) -> Result<Vec<PrunedRange>, StoreError> {
    let ends: Vec<i64> = runs
        .iter()
        .flat_map(|&(first, last)| [first as i64, last as i64])
        .collect();
    let rows = tx
        .query(
            "SELECT seq, prev_hash, hash FROM events WHERE seq = ANY($1)",
            &[&ends],
        )
        .await?;
    let mut found = std::collections::HashMap::new();
    for r in rows {
        let seq: i64 = r.get(0);
        found.insert(seq, (r.get::<_, Vec<u8>>(1), r.get::<_, Vec<u8>>(2)));
    }
    runs.iter()
        .map(|&(first, last)| {
            let missing = |seq: u64| StoreError::Corrupt {
                seq,
                detail: "an expired event vanished while it was being removed".into(),
            };
            let (prev, _) = found.get(&(first as i64)).ok_or_else(|| missing(first))?;
            let (_, hash) = found.get(&(last as i64)).ok_or_else(|| missing(last))?;
            Ok(PrunedRange {
                first_seq: first,
                last_seq: last,
                prev_hash: hash32(prev.clone(), first as i64)?,
                last_hash: hash32(hash.clone(), last as i64)?,
            })
        })
        .collect()
}

/// Writes a signed record of `ranges` (removing `events` events) and the ranges under it.
async fn record(
    tx: &Transaction<'_>,
    key: &SigningKey,
    ranges: &[PrunedRange],
    events: u64,
) -> Result<(), StoreError> {
    // The chain's lock is held: no other node numbers a record meanwhile.
    let id: i64 = tx
        .query_one("SELECT COALESCE(max(id), 0) + 1 FROM prunes", &[])
        .await?
        .get(0);
    let r = signed_record(key, id, ranges, events, now_text());
    tx.execute(
        "INSERT INTO prunes (id, signed_at, ranges, events, digest, signature)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &r.id,
            &r.signed_at,
            &r.ranges,
            &r.events,
            &r.digest,
            &r.signature,
        ],
    )
    .await?;
    let firsts: Vec<i64> = ranges.iter().map(|r| r.first_seq as i64).collect();
    let lasts: Vec<i64> = ranges.iter().map(|r| r.last_seq as i64).collect();
    let prevs: Vec<&[u8]> = ranges.iter().map(|r| r.prev_hash.as_slice()).collect();
    let hashes: Vec<&[u8]> = ranges.iter().map(|r| r.last_hash.as_slice()).collect();
    tx.execute(
        "INSERT INTO pruned_ranges (first_seq, last_seq, prev_hash, last_hash, prune_id)
             SELECT f, l, p, h, $5 FROM unnest($1::int8[], $2::int8[], $3::bytea[], $4::bytea[])
                 AS r (f, l, p, h)",
        &[&firsts, &lasts, &prevs, &hashes, &id],
    )
    .await?;
    Ok(())
}

/// Takes the events `source` selects (`table WHERE …`, with `params`) out of the running
/// totals.
async fn uncount(
    tx: &Transaction<'_>,
    source: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StoreError> {
    let sql = format!(
        "WITH d AS (SELECT level, category, outcome, action FROM {source}),
         c (name, n) AS (
             SELECT 'total', count(*) FROM d
             UNION ALL SELECT 'outcome:' || outcome, count(*) FROM d GROUP BY outcome
             UNION ALL SELECT 'level:' || level, count(*) FROM d GROUP BY level
             UNION ALL SELECT 'category:' || category, count(*) FROM d GROUP BY category
             UNION ALL SELECT 'action:' || action, count(*) FROM d GROUP BY action)
         UPDATE counters SET value = counters.value - c.n FROM c WHERE counters.name = c.name"
    );
    tx.execute(&sql, params).await?;
    tx.execute(
        "DELETE FROM counters WHERE value <= 0 AND name <> 'total'",
        &[],
    )
    .await?;
    Ok(())
}

/// Counts the rollups of the hours from `from_ms` to `to_ms` (event time, both inclusive)
/// again from the events still stored in them, as `store::sqlite::rollup::rebuild_span` does.
async fn rebuild_span(tx: &Transaction<'_>, from_ms: i64, to_ms: i64) -> Result<(), StoreError> {
    use crate::store::rollup::HOUR_MS;
    let first_hour = from_ms.div_euclid(HOUR_MS);
    let end_hour = to_ms.div_euclid(HOUR_MS) + 1;
    let (lo, hi) = (first_hour * HOUR_MS, end_hour * HOUR_MS);
    let (first_minute, end_minute) = (first_hour * 60, end_hour * 60);
    tx.execute(
        "DELETE FROM rollup_minute WHERE minute >= $1 AND minute < $2",
        &[&first_minute, &end_minute],
    )
    .await?;
    for table in ["rollup_hour_total", "rollup_hour", "rollup_user_hour"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE hour >= $1 AND hour < $2"),
            &[&first_hour, &end_hour],
        )
        .await?;
    }
    let minute = floor_div("ts", 60_000);
    let hour = floor_div("ts", HOUR_MS);
    tx.execute(
        &format!(
            "INSERT INTO rollup_minute (minute, n, denied, failed, errors, critical)
             SELECT {minute}, count(*),
                    count(*) FILTER (WHERE outcome = 'denied'),
                    count(*) FILTER (WHERE outcome = 'failure'),
                    count(*) FILTER (WHERE outcome = 'failure' OR level IN ('error', 'critical')),
                    count(*) FILTER (WHERE level = 'critical')
             FROM events WHERE ts >= $1 AND ts < $2 GROUP BY 1"
        ),
        &[&lo, &hi],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO rollup_hour_total (hour, n, denied, failed, errors, critical)
             SELECT {}, sum(n), sum(denied), sum(failed), sum(errors), sum(critical)
             FROM rollup_minute WHERE minute >= $1 AND minute < $2 GROUP BY 1",
            floor_div("minute", 60)
        ),
        &[&first_minute, &end_minute],
    )
    .await?;
    for (kind, column, filter) in crate::store::rollup::HOUR_KINDS {
        tx.execute(
            &format!(
                "INSERT INTO rollup_hour (kind, value, hour, n)
                 SELECT '{kind}', {column}, {hour}, count(*)
                 FROM events WHERE ts >= $1 AND ts < $2 {filter} GROUP BY 2, 3"
            ),
            &[&lo, &hi],
        )
        .await?;
    }
    tx.execute(
        &format!(
            "INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
             SELECT {hour}, user_id, count(*),
                    count(*) FILTER (WHERE outcome = 'denied'),
                    count(*) FILTER (WHERE outcome = 'failure')
             FROM events WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2"
        ),
        &[&lo, &hi],
    )
    .await?;
    Ok(())
}

/// Drops whole month partitions whose events have all expired and hold one unbroken run of
/// seqs before the head, each under a signed record of that run; empty partitions of past
/// months go too.
async fn drop_expired_partitions(
    client: &mut Client,
    key: &SigningKey,
    policy: &RetentionPolicy,
    now_ms: i64,
    out: &mut Pruned,
) -> Result<(), StoreError> {
    let horizon = policy.horizon(now_ms);
    let partitions: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'events' ORDER BY c.relname",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in partitions {
        // Names are ours (`postgres::partition`), never a sender's.
        if !name.starts_with("events_")
            || !name[7..].chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let tx = client.transaction().await?;
        let head: i64 = tx
            .query_one("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE", &[])
            .await?
            .get(0);
        let row = tx
            .query_one(
                &format!(
                    "SELECT count(*), min(seq), max(seq), min(ts), max(ts),
                            count(*) FILTER (WHERE ts >= $1)
                     FROM {name}"
                ),
                &[&horizon],
            )
            .await?;
        let (n, first, last): (i64, Option<i64>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        let (oldest, newest, recent): (Option<i64>, Option<i64>, i64) =
            (row.get(3), row.get(4), row.get(5));
        let (Some(first), Some(last), Some(oldest), Some(newest)) = (first, last, oldest, newest)
        else {
            tx.commit().await?;
            continue;
        };
        if recent > 0 || last >= head || last - first + 1 != n {
            tx.commit().await?;
            continue;
        }
        // Every row must have expired under its own level and category.
        let kept = {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
            let rows = tx
                .query_raw(&format!("SELECT ts, level, category FROM {name}"), params)
                .await?;
            pin_mut!(rows);
            let mut kept = false;
            while let Some(r) = rows.try_next().await? {
                let (level, category): (String, String) = (r.get(1), r.get(2));
                if !policy.expired(r.get(0), &level, &category, now_ms) {
                    kept = true;
                    break;
                }
            }
            kept
        };
        if kept {
            tx.commit().await?;
            continue;
        }
        let size: i64 = tx
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&name],
            )
            .await?
            .get(0);
        let ranges = ranges_of(&tx, &[(first as u64, last as u64)]).await?;
        record(&tx, key, &ranges, n as u64).await?;
        uncount(&tx, &name, &[]).await?;
        tx.batch_execute(&format!("DROP TABLE {name}")).await?;
        rebuild_span(&tx, oldest, newest).await?;
        tx.commit().await?;
        tracing::info!(partition = %name, events = n, "retention dropped a whole partition");
        out.events += n as u64;
        out.ranges += 1;
        out.records += 1;
        out.seqs.extend(first as u64..=last as u64);
        out.freed_bytes += size.max(0) as u64;
    }
    Ok(())
}
