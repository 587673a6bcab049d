//! Where the CPU went during a phase: the bench itself, the processes it waited for (pgbench, `projector
//! rebuild`), each service, and Postgres (its server processes and the backends of the bench's database,
//! not other databases' backends), from `/proc/<pid>/stat`, as percent of one core. On a 2-core machine
//! that the load generator shares with what it measures, this is the first thing to read beside a missed
//! target. Postgres is split by whom a backend works for, from `pg_stat_activity`'s `application_name`:
//! `postgres_appender` (command-service's connections), `postgres_projector`, `postgres_query`, and `postgres`
//! (the server's own processes and every other backend: the bench's, pgbench's).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a [`Tracker`] looks at the processes, so that one that exits mid-phase (a rebuild's
/// connections, a pgbench client) still counts with what it used up to its last sample.
const TRACK_INTERVAL: Duration = Duration::from_millis(250);

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux the bench targets).
const TICKS_PER_S: f64 = 100.0;

/// The processes whose CPU is accounted.
#[derive(Debug, Clone)]
pub struct Processes {
    pub command_service: Option<u32>,
    pub projector: Option<u32>,
    pub query_service: Option<u32>,
    /// The bench's database: only its backends count as Postgres work of the bench.
    pub database: String,
    /// Connections to it, for `pg_stat_activity`.
    pub pool: sqlx::PgPool,
    /// The group of each backend known to work for a service, by pid (see the module's comment).
    pub backends: Arc<Mutex<HashMap<u32, &'static str>>>,
}

/// The group of a backend's CPU, by its `application_name`.
fn backend_group(application_name: &str) -> &'static str {
    match application_name {
        "tally-command-service" => "postgres_appender",
        "tally-projector" => "postgres_projector",
        "tally-query-service" => "postgres_query",
        _ => "postgres",
    }
}

/// CPU ticks used so far by each process of each group, at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    ticks: BTreeMap<&'static str, BTreeMap<u32, u64>>,
}

impl Processes {
    pub fn snapshot(&self) -> Snapshot {
        let mut ticks: BTreeMap<&'static str, BTreeMap<u32, u64>> = BTreeMap::new();
        let own = std::process::id();
        if let Some(stat) = read_stat(own) {
            ticks.entry("bench").or_default().insert(own, stat.ticks);
            ticks.entry("bench_children").or_default().insert(own, stat.children_ticks);
        }
        for (name, pid) in [
            ("command_service", self.command_service),
            ("projector", self.projector),
            ("query_service", self.query_service),
        ] {
            if let Some(stat) = pid.and_then(read_stat) {
                ticks.entry(name).or_default().insert(stat.pid, stat.ticks);
            }
        }
        let backends = self.backends.lock().expect("unpoisoned").clone();
        for (pid, ticks_used) in postgres_ticks(&self.database) {
            let group = backends.get(&pid).copied().unwrap_or("postgres");
            ticks.entry(group).or_default().insert(pid, ticks_used);
        }
        Snapshot { at: Instant::now(), ticks }
    }

    /// Reads which backend works for whom; a backend not seen yet counts as `postgres` until it is.
    pub async fn learn_backends(&self) {
        let rows: Result<Vec<(i32, String)>, _> = sqlx::query_as(
            "SELECT pid, coalesce(application_name, '') FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(&self.pool)
        .await;
        if let Ok(rows) = rows {
            let mut backends = self.backends.lock().expect("unpoisoned");
            for (pid, application_name) in rows {
                backends.insert(pid as u32, backend_group(&application_name));
            }
        }
    }
}

/// CPU accounting over a phase, sampling as it goes.
pub struct Tracker {
    start: Snapshot,
    seen: Arc<Mutex<Snapshot>>,
    processes: Processes,
    task: tokio::task::JoinHandle<()>,
}

impl Processes {
    /// Starts accounting; [`Tracker::finish`] gives each group's share of one core since now.
    pub fn track(&self) -> Tracker {
        let start = self.snapshot();
        let seen = Arc::new(Mutex::new(start.clone()));
        let task = {
            let (processes, seen) = (self.clone(), seen.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TRACK_INTERVAL);
                loop {
                    interval.tick().await;
                    processes.learn_backends().await;
                    let latest = processes.snapshot();
                    seen.lock().expect("unpoisoned").absorb(latest);
                }
            })
        };
        Tracker { start, seen, processes: self.clone(), task }
    }
}

impl Tracker {
    pub fn finish(self) -> BTreeMap<String, f64> {
        self.finish_with_time().0
    }

    /// Each group's share of one core, and how long the phase lasted.
    pub fn finish_with_time(self) -> (BTreeMap<String, f64>, Duration) {
        let mut seen = self.seen.lock().expect("unpoisoned").clone();
        seen.absorb(self.processes.snapshot());
        (self.start.percent_since(&seen), seen.at.duration_since(self.start.at))
    }
}

/// CPU milliseconds each group spent per 1,000 `units` (commands, transactions) over a phase of `elapsed`.
pub fn per_thousand(percent: &BTreeMap<String, f64>, elapsed: Duration, units: f64) -> BTreeMap<String, f64> {
    percent
        .iter()
        .map(|(group, share)| {
            let cpu_ms = share / 100.0 * elapsed.as_secs_f64() * 1_000.0;
            (group.clone(), (cpu_ms / units.max(1.0) * 1_000.0 * 10.0).round() / 10.0)
        })
        .collect()
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Snapshot {
    /// Takes in a later snapshot: its instant, and every process's latest ticks, keeping processes gone since.
    fn absorb(&mut self, later: Snapshot) {
        self.at = later.at;
        for (group, processes) in later.ticks {
            let known = self.ticks.entry(group).or_default();
            for (pid, ticks) in processes {
                let entry = known.entry(pid).or_default();
                *entry = (*entry).max(ticks);
            }
        }
    }

    /// A process's ticks in this snapshot. A backend counted as `postgres` before its service was learned is
    /// looked up in every Postgres group, so that it never counts whole once it moves to its own.
    fn earlier(&self, group: &str, pid: u32) -> u64 {
        let in_group = |name: &str| self.ticks.get(name).and_then(|processes| processes.get(&pid)).copied();
        if group.starts_with("postgres") {
            ["postgres", "postgres_appender", "postgres_projector", "postgres_query"]
                .into_iter()
                .find_map(in_group)
                .unwrap_or(0)
        } else {
            in_group(group).unwrap_or(0)
        }
    }

    /// Percent of one core each group used since `self`. A process that started in between counts whole.
    fn percent_since(&self, later: &Snapshot) -> BTreeMap<String, f64> {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(f64::EPSILON);
        later
            .ticks
            .iter()
            .map(|(name, processes)| {
                let used: u64 =
                    processes.iter().map(|(pid, ticks)| ticks.saturating_sub(self.earlier(name, *pid))).sum();
                let percent = used as f64 / TICKS_PER_S / seconds * 100.0;
                (name.to_string(), (percent * 10.0).round() / 10.0)
            })
            .collect()
    }
}

/// `postgres 67%, command_service 38%, …`, busiest first, for the log of a phase.
pub fn describe(percent: &BTreeMap<String, f64>) -> String {
    let mut shares: Vec<(&String, &f64)> = percent.iter().filter(|(_, share)| **share >= 0.5).collect();
    shares.sort_by(|a, b| b.1.total_cmp(a.1));
    let shares: Vec<String> = shares.iter().map(|(name, share)| format!("{name} {share:.0}%")).collect();
    format!("cpu (% of one core): {}", shares.join(", "))
}

/// `cpu ms per 1,000 commands: postgres_appender 310, command_service 150, …`, busiest first.
pub fn describe_per_thousand(per_thousand: &BTreeMap<String, f64>, units: &str) -> String {
    let mut costs: Vec<(&String, &f64)> = per_thousand.iter().filter(|(_, cost)| **cost >= 0.5).collect();
    costs.sort_by(|a, b| b.1.total_cmp(a.1));
    let total: f64 = per_thousand.values().sum();
    let costs: Vec<String> = costs.iter().map(|(name, cost)| format!("{name} {cost:.0}")).collect();
    format!("cpu ms per 1,000 {units}: {} (all {total:.0})", costs.join(", "))
}

struct Stat {
    pid: u32,
    command: String,
    /// utime + stime.
    ticks: u64,
    /// cutime + cstime: children waited for.
    children_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(pid: u32, stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let (command, rest) = stat[open + 1..].rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command, fields count from 3 (state): utime is field 14, stime 15, cutime 16, cstime 17 (proc(5)).
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    Some(Stat {
        pid,
        command: command.to_owned(),
        ticks: field(14)? + field(15)?,
        children_ticks: field(16)? + field(17)?,
    })
}

/// Ticks of the Postgres server processes and of the backends connected to `database`.
fn postgres_ticks(database: &str) -> BTreeMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .filter(|stat| stat.command == "postgres")
        .filter(|stat| {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", stat.pid)).unwrap_or_default();
            counts_for(&String::from_utf8_lossy(&cmdline).replace('\0', " "), database)
        })
        .map(|stat| (stat.pid, stat.ticks))
        .collect()
}

/// Whether a Postgres process (by its title, such as `postgres: 15/main: root tally_bench_1 127.0.0.1(5392) idle`)
/// works for the bench: the postmaster and the background processes (WAL writer, checkpointer, …) do;
/// a backend does when it is connected to the bench's database.
fn counts_for(title: &str, database: &str) -> bool {
    let Some(status) = title.trim().strip_prefix("postgres: ") else { return true };
    let last = status.rsplit(": ").next().unwrap_or(status);
    let words: Vec<&str> = last.split_whitespace().collect();
    let is_backend = words.len() >= 3 && (words[2].contains('(') || words[2] == "[local]");
    !is_backend || words[1] == database
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_command_and_ticks() {
        let stat = "4242 (postgres) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 0 0 0";
        let parsed = parse_stat(4242, stat).unwrap();
        assert_eq!((parsed.command.as_str(), parsed.ticks, parsed.children_ticks), ("postgres", 300, 10));
    }

    #[test]
    fn only_the_bench_databases_backends_count() {
        let database = "tally_bench_42";
        assert!(counts_for("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", database));
        assert!(counts_for("postgres: 15/main: walwriter ", database));
        assert!(counts_for("postgres: 15/main: checkpointer ", database));
        assert!(counts_for("postgres: 15/main: root tally_bench_42 127.0.0.1(53920) idle", database));
        assert!(counts_for("postgres: root tally_bench_42 [local] INSERT", database));
        assert!(!counts_for("postgres: 15/main: root _sqlx_test_77 127.0.0.1(53921) idle", database));
    }

    #[test]
    fn backends_are_grouped_by_the_service_they_work_for() {
        assert_eq!(backend_group("tally-command-service"), "postgres_appender");
        assert_eq!(backend_group("tally-projector"), "postgres_projector");
        assert_eq!(backend_group("tally-query-service"), "postgres_query");
        assert_eq!(backend_group("pgbench"), "postgres");
    }

    #[test]
    fn cpu_per_thousand_units_follows_share_and_time() {
        let percent = BTreeMap::from([("postgres".to_owned(), 50.0)]);
        // Half a core for 2 s is 1,000 ms of CPU; over 4,000 commands that is 250 ms per 1,000.
        assert_eq!(per_thousand(&percent, Duration::from_secs(2), 4_000.0)["postgres"], 250.0);
    }

    #[test]
    fn this_process_is_accounted() {
        assert!(read_stat(std::process::id()).is_some());
    }
}
