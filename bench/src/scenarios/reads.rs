//! reads: a closed loop of `GET /v1/wallets/{id}` over the spread wallets, for requests per second.

use std::sync::Arc;

use rand::Rng;
use uuid::Uuid;

use crate::api::Queries;
use crate::cpu;
use crate::http::Response;
use crate::load::{self, Call, Stop, Verdict, Workload};
use crate::report::Reads;

use super::{Bench, Population};

struct WalletReads {
    wallets: Arc<Vec<Uuid>>,
}

impl Workload for WalletReads {
    fn call(&self, sequence: u64) -> Call {
        let wallet_id = self.wallets[rand::rng().random_range(0..self.wallets.len())];
        Call { request: Queries::wallet_request(wallet_id), wallet_id: Some(wallet_id), sequence }
    }

    fn judge(&self, _call: &Call, response: &Response) -> Verdict {
        if response.is_success() {
            Verdict::Ok
        } else {
            Verdict::Error(format!("status {} {}", response.status, response.problem_code().unwrap_or_default()))
        }
    }
}

pub async fn run(bench: &Bench, population: &Population, queries: &Queries, reads: &mut Reads) -> anyhow::Result<()> {
    let workload = Arc::new(WalletReads { wallets: population.wallets.clone() });
    let before = bench.processes.track();
    let tally =
        load::closed_loop(queries.pool.endpoint(), bench.config.read_workers, Stop::After(bench.plan.reads), workload)
            .await;
    reads.cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&reads.cpu_percent));
    reads.requests_per_s = Some(tally.rate_per_s().round());
    reads.p50_ms = Some(tally.latency_ms(0.5));
    reads.p99_ms = Some(tally.latency_ms(0.99));
    reads.errors = Some(tally.error_count());
    eprintln!(
        "    {} reads in {:.1}s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors: {}",
        tally.completed(),
        tally.elapsed.as_secs_f64(),
        tally.rate_per_s(),
        tally.latency_ms(0.5),
        tally.latency_ms(0.99),
        tally.errors_summary()
    );
    if tally.ok == 0 {
        anyhow::bail!("no read succeeded: {}", tally.errors_summary());
    }
    Ok(())
}
