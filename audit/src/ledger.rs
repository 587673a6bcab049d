//! The ledger replayed from the events' data with plain integer arithmetic: every wallet's balance and what
//! its holds reserve, in units of its asset's last decimal place. Nothing here comes from the product.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Money in units of `10^-scale`.
pub type Units = i128;

/// `text` (`"12.50"`, `"-3"`) in units of `10^-scale`, if it has at most `scale` decimal places.
pub fn units(text: &str, scale: u32) -> Option<Units> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || fraction.len() > scale as usize {
        return None;
    }
    if !whole.bytes().chain(fraction.bytes()).all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{whole}{fraction:0<width$}", width = scale as usize);
    let value: Units = padded.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// `units` written at `scale`, for reports.
pub fn format(units: Units, scale: u32) -> String {
    let digits = format!("{:0>width$}", units.unsigned_abs(), width = scale as usize + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale as usize);
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

#[derive(Debug, Clone)]
pub struct Wallet {
    pub asset: String,
    pub scale: u32,
    /// `None`: unlimited (the treasury).
    pub limit: Option<Units>,
    pub balance: Units,
    pub held: Units,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct Hold {
    pub wallet: String,
    pub scale: u32,
    pub amount: Units,
    pub captured: Units,
    pub released: Units,
    pub expires_at: DateTime<Utc>,
    pub resolved: bool,
}

/// What the replay of one event found wrong: `(check, detail)`.
pub type Problem = (&'static str, String);

/// Every wallet and hold, as the events so far leave them.
#[derive(Debug, Default)]
pub struct Ledger {
    pub wallets: BTreeMap<String, Wallet>,
    pub holds: HashMap<String, Hold>,
}

fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

impl Ledger {
    /// Applies one event of stream `stream_id` (at `version`, recorded `at`); answers what it found wrong.
    pub fn apply(&mut self, stream_id: &str, version: i64, event_type: &str, data: &Value) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(wallet) = self.wallets.get_mut(stream_id) {
            wallet.version = version;
        }
        match event_type {
            "WalletOpened" => self.open(stream_id, version, data, &mut problems),
            "WalletDebited" | "WalletCredited" => {
                self.post(stream_id, event_type == "WalletDebited", data, &mut problems)
            }
            "WalletHoldPlaced" | "WalletHoldSettled" => self.hold_change(stream_id, event_type, data, &mut problems),
            "HoldPlaced" => self.place(stream_id, data, &mut problems),
            "HoldCaptured" | "HoldVoided" | "HoldExpired" => self.settle(stream_id, event_type, data, &mut problems),
            _ => {}
        }
        problems
    }

    fn open(&mut self, stream_id: &str, version: i64, data: &Value, problems: &mut Vec<Problem>) {
        let Some(scale) = data.get("scale").and_then(Value::as_u64).and_then(|scale| u32::try_from(scale).ok()) else {
            problems.push(("data", "WalletOpened without a scale".to_owned()));
            return;
        };
        let limit = match data.get("overdraft_limit") {
            None | Some(Value::Null) => None,
            Some(limit) => match limit.as_str().and_then(|limit| units(limit, scale)) {
                Some(limit) => Some(limit),
                None => {
                    problems.push(("data", format!("overdraft_limit {limit} is not an amount at scale {scale}")));
                    return;
                }
            },
        };
        let asset = text(data, "asset").unwrap_or_default().to_owned();
        self.wallets.insert(stream_id.to_owned(), Wallet { asset, scale, limit, balance: 0, held: 0, version });
    }

    fn post(&mut self, stream_id: &str, debit: bool, data: &Value, problems: &mut Vec<Problem>) {
        let Some(wallet) = self.wallets.get_mut(stream_id) else {
            problems.push(("data", "a posting on a wallet never opened".to_owned()));
            return;
        };
        let scale = wallet.scale;
        let (Some(amount), Some(after)) = (
            text(data, "amount").and_then(|amount| units(amount, scale)),
            text(data, "balance_after").and_then(|after| units(after, scale)),
        ) else {
            problems.push(("data", format!("a posting whose amount or balance_after is not at scale {scale}")));
            return;
        };
        let expected = if debit { wallet.balance - amount } else { wallet.balance + amount };
        if amount <= 0 || after != expected {
            problems.push((
                "balance",
                format!(
                    "{} of {} from {} gives {}, the event says {}",
                    if debit { "debit" } else { "credit" },
                    format(amount, scale),
                    format(wallet.balance, scale),
                    format(expected, scale),
                    format(after, scale)
                ),
            ));
        }
        wallet.balance = expected;
        if let (true, Some(limit)) = (debit, wallet.limit) {
            if wallet.balance - wallet.held < -limit {
                problems.push((
                    "limit",
                    format!(
                        "{} available (balance {}, held {}) is below minus the limit {}",
                        format(wallet.balance - wallet.held, scale),
                        format(wallet.balance, scale),
                        format(wallet.held, scale),
                        format(limit, scale)
                    ),
                ));
            }
        }
    }

    fn hold_change(&mut self, stream_id: &str, event_type: &str, data: &Value, problems: &mut Vec<Problem>) {
        let Some(wallet) = self.wallets.get_mut(stream_id) else {
            problems.push(("data", "a hold on a wallet never opened".to_owned()));
            return;
        };
        let scale = wallet.scale;
        let field = |name: &str| text(data, name).and_then(|value| units(value, scale));
        let change = if event_type == "WalletHoldPlaced" {
            field("amount")
        } else {
            field("captured").zip(field("released")).map(|(captured, released)| -(captured + released))
        };
        let (Some(change), Some(after)) = (change, field("held_after")) else {
            problems.push(("data", format!("{event_type} whose amounts are not at scale {scale}")));
            return;
        };
        let expected = wallet.held + change;
        if after != expected || expected < 0 {
            problems.push((
                "held",
                format!(
                    "held {} changes by {} to {}, the event says {}",
                    format(wallet.held, scale),
                    format(change, scale),
                    format(expected, scale),
                    format(after, scale)
                ),
            ));
        }
        wallet.held = expected;
        if let (true, Some(limit)) = (change > 0, wallet.limit) {
            if wallet.balance - wallet.held < -limit {
                problems.push((
                    "limit",
                    format!("a hold leaves {} available", format(wallet.balance - wallet.held, scale)),
                ));
            }
        }
    }

    fn place(&mut self, stream_id: &str, data: &Value, problems: &mut Vec<Problem>) {
        let wallet = text(data, "wallet_id").map(|id| format!("wallet-{id}")).unwrap_or_default();
        let Some(scale) = self.wallets.get(&wallet).map(|wallet| wallet.scale) else {
            problems.push(("holds", format!("a hold on {wallet}, a wallet never opened")));
            return;
        };
        let amount = text(data, "amount").and_then(|amount| units(amount, scale));
        let expires_at = text(data, "expires_at").and_then(|at| at.parse::<DateTime<Utc>>().ok());
        let (Some(amount), Some(expires_at)) = (amount, expires_at) else {
            problems.push(("data", "HoldPlaced without an amount or an expiry".to_owned()));
            return;
        };
        let hold = Hold { wallet, scale, amount, captured: 0, released: 0, expires_at, resolved: false };
        self.holds.insert(stream_id.to_owned(), hold);
    }

    fn settle(&mut self, stream_id: &str, event_type: &str, data: &Value, problems: &mut Vec<Problem>) {
        let Some(hold) = self.holds.get_mut(stream_id) else {
            problems.push(("holds", format!("{event_type} of a hold never placed")));
            return;
        };
        if hold.resolved {
            problems.push(("holds", format!("{event_type} of a hold already resolved")));
            return;
        }
        let scale = hold.scale;
        let field = |name: &str| text(data, name).and_then(|value| units(value, scale));
        let remaining = hold.amount - hold.captured - hold.released;
        let (captured, released, resolves, at) = match event_type {
            "HoldCaptured" => {
                let is_final = data.get("final").and_then(Value::as_bool).unwrap_or(false);
                (field("amount"), field("released"), is_final, text(data, "captured_at"))
            }
            _ => (Some(0), field("released"), true, text(data, "released_at")),
        };
        let (Some(captured), Some(released), Some(at)) =
            (captured, released, at.and_then(|at| at.parse::<DateTime<Utc>>().ok()))
        else {
            problems.push(("data", format!("{event_type} whose amounts or time cannot be read")));
            return;
        };
        if event_type == "HoldCaptured" && at >= hold.expires_at {
            problems
                .push(("holds", format!("a capture at {at}, at or after the hold's expires_at {}", hold.expires_at)));
        }
        if event_type == "HoldExpired" && at < hold.expires_at {
            problems.push(("holds", format!("an expiry at {at}, before the hold's expires_at {}", hold.expires_at)));
        }
        let settles_all = captured + released == remaining;
        if captured < 0 || released < 0 || captured + released > remaining || (resolves && !settles_all) {
            problems.push((
                "holds",
                format!(
                    "{event_type} of {} captured and {} released, with {} remaining",
                    format(captured, scale),
                    format(released, scale),
                    format(remaining, scale)
                ),
            ));
        }
        hold.captured += captured;
        hold.released += released;
        hold.resolved = resolves;
    }

    /// What the whole log must leave: every asset summing to zero, and each wallet's `held` equal to what its
    /// active holds have left.
    pub fn finish(&self) -> Vec<(String, Problem)> {
        let mut problems = Vec::new();
        let mut sums: BTreeMap<&str, (Units, u32)> = BTreeMap::new();
        for wallet in self.wallets.values() {
            let sum = sums.entry(&wallet.asset).or_insert((0, wallet.scale));
            sum.0 += wallet.balance;
        }
        for (asset, (sum, scale)) in sums {
            if sum != 0 {
                problems.push((
                    format!("asset {asset}"),
                    ("zero sum", format!("its wallets sum to {}", format(sum, scale))),
                ));
            }
        }
        let mut remaining: HashMap<&str, Units> = HashMap::new();
        for hold in self.holds.values().filter(|hold| !hold.resolved) {
            *remaining.entry(&hold.wallet).or_default() += hold.amount - hold.captured - hold.released;
        }
        for (stream_id, wallet) in &self.wallets {
            let expected = remaining.get(stream_id.as_str()).copied().unwrap_or(0);
            if wallet.held != expected {
                let detail = format!(
                    "held {}, its active holds have {} left",
                    format(wallet.held, wallet.scale),
                    format(expected, wallet.scale)
                );
                problems.push((stream_id.clone(), ("holds", detail)));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_at_their_scale_exactly() {
        assert_eq!(units("12.50", 2), Some(1250));
        assert_eq!(units("-3", 2), Some(-300));
        assert_eq!(units("0.001", 2), None);
        assert_eq!(units("1e3", 2), None);
        assert_eq!(units("", 2), None);
        assert_eq!(format(-300, 2), "-3.00");
        assert_eq!(format(5, 0), "5");
    }
}
