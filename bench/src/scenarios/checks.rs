//! Exactness checks over the whole database, in SQL: the zero sum per asset over the stream snapshots,
//! and the read models equal to those snapshots once the projection has caught up.

use sqlx::PgPool;

use crate::report::Check;

/// Assets shown in a failure at most.
const SHOWN_MAX: i64 = 5;

/// Every asset's wallets (system wallets included) sum to exactly zero in the stream snapshots.
pub async fn zero_sum(database: &PgPool, when: &str) -> Check {
    let name = format!("zero sum per asset in the stream snapshots, {when}");
    let result: Result<(Vec<(String, String)>, i64), sqlx::Error> = async {
        let unbalanced: Vec<(String, String)> = sqlx::query_as(
            "SELECT state->>'asset', sum((state->>'balance')::numeric)::text
             FROM streams
             WHERE stream_id LIKE 'wallet-%' AND state->>'state' = 'open'
             GROUP BY 1 HAVING sum((state->>'balance')::numeric) <> 0
             ORDER BY 1 LIMIT $1",
        )
        .bind(SHOWN_MAX)
        .fetch_all(database)
        .await?;
        let (assets,): (i64,) = sqlx::query_as(
            "SELECT count(DISTINCT state->>'asset') FROM streams WHERE stream_id LIKE 'wallet-%' AND state->>'state' = 'open'",
        )
        .fetch_one(database)
        .await?;
        Ok((unbalanced, assets))
    }
    .await;
    match result {
        Ok((unbalanced, assets)) if unbalanced.is_empty() => {
            Check { check: name, passed: true, detail: format!("{assets} assets, each summing to 0") }
        }
        Ok((unbalanced, _)) => Check {
            check: name,
            passed: false,
            detail: unbalanced
                .iter()
                .map(|(asset, sum)| format!("{asset} sums to {sum}"))
                .collect::<Vec<_>>()
                .join(", "),
        },
        Err(error) => Check { check: name, passed: false, detail: format!("query failed: {error}") },
    }
}

/// Every wallet of `rm_wallets` has its snapshot's balance and version, and no snapshot lacks its row.
/// Call it once the projection has caught up with the head.
pub async fn read_models_match_snapshots(database: &PgPool, when: &str) -> Check {
    let name = format!("read models equal the stream snapshots (balance and version of every wallet), {when}");
    let result: Result<(i64, i64, Option<String>), sqlx::Error> = sqlx::query_as(
        "WITH snapshots AS (
             SELECT substr(stream_id, 8)::uuid AS wallet_id, version, (state->>'balance')::numeric AS balance
             FROM streams WHERE stream_id LIKE 'wallet-%'
         ),
         differences AS (
             SELECT coalesce(s.wallet_id, r.wallet_id) AS wallet_id,
                    s.balance AS snapshot_balance, s.version AS snapshot_version,
                    r.balance AS read_balance, r.version AS read_version
             FROM snapshots s FULL JOIN rm_wallets r ON r.wallet_id = s.wallet_id
             WHERE s.wallet_id IS NULL OR r.wallet_id IS NULL
                OR s.balance <> r.balance OR s.version <> r.version
         )
         SELECT (SELECT count(*) FROM snapshots),
                (SELECT count(*) FROM differences),
                (SELECT string_agg(format('%s: snapshot %s v%s, read model %s v%s', wallet_id, snapshot_balance,
                                          snapshot_version, read_balance, read_version), '; ')
                 FROM (SELECT * FROM differences LIMIT 3) AS shown)",
    )
    .fetch_one(database)
    .await;
    match result {
        Ok((wallets, 0, _)) => Check { check: name, passed: true, detail: format!("{wallets} wallets match") },
        Ok((wallets, differing, shown)) => Check {
            check: name,
            passed: false,
            detail: format!("{differing} of {wallets} wallets differ, e.g. {}", shown.unwrap_or_default()),
        },
        Err(error) => Check { check: name, passed: false, detail: format!("query failed: {error}") },
    }
}

/// Lines of `projector verify`'s report quoted when it finds something.
const VERIFY_LINES_SHOWN: usize = 15;

/// `projector verify` over the whole database: every stream replayed against its snapshot and the read
/// models, every hash chain and invariant. It must exit 0.
pub async fn projector_verify(projector_bin: &std::path::Path, database_url: &str, when: &str) -> Check {
    let check = format!("projector verify passes, {when}");
    let output = tokio::process::Command::new(projector_bin)
        .arg("verify")
        .env("DATABASE_URL", database_url)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match output {
        Ok(output) => {
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            let tail: Vec<&str> = text.lines().rev().take(VERIFY_LINES_SHOWN).collect();
            let detail = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
            Check { check, passed: output.status.success(), detail }
        }
        Err(error) => {
            Check { check, passed: false, detail: format!("could not run {}: {error}", projector_bin.display()) }
        }
    }
}
