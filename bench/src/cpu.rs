//! Where the CPU went during a phase: the bench itself, each service, and Postgres (all its processes on
//! the machine), from `/proc/<pid>/stat`, as percent of one core. On a 2-core machine that the load
//! generator shares with what it measures, this is the first thing to read next to a missed target.

use std::collections::BTreeMap;
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux the bench targets).
const TICKS_PER_S: f64 = 100.0;

/// The processes whose CPU is accounted.
#[derive(Debug, Clone)]
pub struct Processes {
    pub command_service: Option<u32>,
    pub projector: Option<u32>,
    pub query_service: Option<u32>,
}

/// CPU ticks used so far, per process group, at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    ticks: BTreeMap<&'static str, u64>,
}

impl Processes {
    pub fn snapshot(&self) -> Snapshot {
        let mut ticks = BTreeMap::new();
        ticks.insert("bench", process_ticks(std::process::id()).unwrap_or(0));
        for (name, pid) in [
            ("command_service", self.command_service),
            ("projector", self.projector),
            ("query_service", self.query_service),
        ] {
            if let Some(ticks_used) = pid.and_then(process_ticks) {
                ticks.insert(name, ticks_used);
            }
        }
        ticks.insert("postgres", postgres_ticks());
        Snapshot { at: Instant::now(), ticks }
    }
}

impl Snapshot {
    /// Percent of one core each group used since `self`.
    pub fn percent_since(&self, later: &Snapshot) -> BTreeMap<String, f64> {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(f64::EPSILON);
        later
            .ticks
            .iter()
            .map(|(name, ticks)| {
                let used = ticks.saturating_sub(self.ticks.get(name).copied().unwrap_or(0));
                let percent = used as f64 / TICKS_PER_S / seconds * 100.0;
                (name.to_string(), (percent * 10.0).round() / 10.0)
            })
            .collect()
    }
}

/// User plus system ticks of one process (all its threads).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ticks(&stat).map(|(_, ticks)| ticks)
}

/// Every process named `postgres` (the server and its backends); ones that exit between two snapshots
/// take their ticks with them, which makes the figure a slight underestimate for short connections.
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit())))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| parse_ticks(&stat))
        .filter(|(command, _)| command == "postgres")
        .map(|(_, ticks)| ticks)
        .sum()
}

/// `(command, utime + stime)` of a `/proc/<pid>/stat` line.
fn parse_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let (command, rest) = stat[open + 1..].rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15 (proc(5)).
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((command.to_owned(), user + system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_command_and_ticks() {
        let stat = "4242 (postgres) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 0 0 0";
        assert_eq!(parse_ticks(stat), Some(("postgres".to_owned(), 300)));
    }

    #[test]
    fn this_process_is_accounted() {
        assert!(process_ticks(std::process::id()).is_some());
    }
}
