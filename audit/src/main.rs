//! `tally-audit verify --export FILE|- [--digests FILE] [--public-key FILE]` and
//! `tally-audit balance --export FILE --wallet ID [--at-position N]` (SPEC §10, docs/audit.md).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_audit::verify::{self, Digests};

#[derive(Debug, Parser)]
#[command(name = "tally-audit", about = "Checks a Tally export on its own: no database, no network, no product code")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recomputes every hash chain, version sequence and the log hash, checks each digest and its signature, zero
    /// sum per asset, every balance against its limit, and the holds; exits 1 with a report on any finding.
    Verify {
        /// The export (`GET /v1/export` from position 0), or `-` for standard input.
        #[arg(long)]
        export: PathBuf,
        /// Digests to check the log hash against (`GET /v1/digests` or `/v1/digests/latest`, or JSON lines).
        #[arg(long)]
        digests: Option<PathBuf>,
        /// The Ed25519 public key (64 hex digits) the digests must be signed with, pinned out of band.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Findings listed at most (all are counted).
        #[arg(long, default_value_t = 50)]
        findings_shown_max: usize,
    },
    /// A wallet's balance, held and available after its last event at or before a position, from the export.
    Balance {
        #[arg(long)]
        export: PathBuf,
        #[arg(long)]
        wallet: String,
        #[arg(long)]
        at_position: Option<i64>,
    },
}

fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Verify { export, digests, public_key, findings_shown_max } => {
            let pinned_key = public_key
                .map(|path| std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display())))
                .transpose()?
                .map(|text| verify::read_key(&text))
                .transpose()?;
            let digests = digests
                .map(|path| std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display())))
                .transpose()?
                .map(|text| verify::read_digests(&text))
                .transpose()?
                .map(|digests| Digests { digests, pinned_key });
            if digests.as_ref().is_some_and(|digests| digests.pinned_key.is_none()) {
                eprintln!("warning: no --public-key: each digest is checked against the key it names itself");
            }
            let report = verify::verify(open(&export)?, digests.as_ref())?;
            print!("{}", report.render(findings_shown_max));
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Balance { export, wallet, at_position } => {
            println!("{}", verify::balance(open(&export)?, &wallet, at_position)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tally-audit: {error:#}");
            ExitCode::from(2)
        }
    }
}
