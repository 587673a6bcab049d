//! The answer of a decided command, rendered from the state it left: the asset, the wallet, the transfer or
//! the hold as SPEC §5 and §8 show it, without its position (which [`Answer::with_position`] fills in after the write).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use tally_shared::api::{
    AssetDefinedView, BalanceView, FeePolicyView, HoldView, HoldWalletView, LegView, TransferView, WalletView,
};
use tally_shared::asset::Asset;
use tally_shared::envelope::{Change, Event, StreamId};
use tally_shared::hold::{Hold, HoldId};
use tally_shared::ledger::{Command, World};
use tally_shared::transfer::TransferEvent;
use tally_shared::wallet::{Wallet, WalletEvent, WalletId};

use crate::answer::Answer;
use crate::event_store::StreamHead;

/// The answer of a decided command, without its position (known once the write has drawn it), rendered
/// from the state the command left. For a command that appended nothing (freezing a frozen wallet), the
/// stream whose position it reports.
pub fn answer(
    command: &Command,
    changes: &[Change],
    world: &World,
    heads: &HashMap<StreamId, StreamHead>,
    now: DateTime<Utc>,
) -> (Answer, Option<StreamId>) {
    match command {
        Command::DefineAsset(define) => {
            let Some(Asset::Defined(definition)) = world.assets.get(&define.code) else { unreachable!("just defined") };
            let view = AssetDefinedView {
                code: definition.code.to_string(),
                scale: definition.scale.places(),
                cash_in_fee: definition.cash_in_fee.as_ref().map(|policy| FeePolicyView {
                    percent: policy.percent.to_string(),
                    fixed: definition.scale.format(policy.fixed),
                    min: policy.min.map(|min| definition.scale.format(min)),
                    max: policy.max.map(|max| definition.scale.format(max)),
                }),
                system_wallets: definition.system_wallets,
                position: 0,
            };
            (Answer { status: 201, body: json!(view) }, None)
        }
        Command::OpenWallet { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => {
            let status = if matches!(command, Command::OpenWallet { .. }) { 201 } else { 200 };
            let metadata = changes
                .iter()
                .find_map(|change| match &change.event {
                    Event::Wallet(WalletEvent::WalletOpened(opened)) => Some(opened.metadata.clone()),
                    _ => None,
                })
                .unwrap_or(serde_json::Value::Null);
            let stream = StreamId::Wallet(*wallet_id);
            (Answer { status, body: wallet_view(world, heads, *wallet_id, metadata) }, Some(stream))
        }
        Command::Move { .. } | Command::Transfer { .. } | Command::Reverse { .. } => {
            (Answer { status: 201, body: json!(transfer_view(changes, heads, now)) }, None)
        }
        Command::CaptureHold { hold_id, .. } => {
            let transfer = TransferView {
                hold: Some(Box::new(hold_view(world, heads, *hold_id))),
                ..transfer_view(changes, heads, now)
            };
            (Answer { status: 201, body: json!(transfer) }, None)
        }
        Command::PlaceHold { hold_id, .. }
        | Command::VoidHold { hold_id, .. }
        | Command::ExpireHold { hold_id, .. } => {
            let stream = StreamId::Hold(*hold_id);
            (Answer { status: 201, body: json!(hold_view(world, heads, *hold_id)) }, Some(stream))
        }
    }
}

/// A hold as it stands in `world`, with its wallet after the command.
fn hold_view(world: &World, heads: &HashMap<StreamId, StreamHead>, hold_id: HoldId) -> HoldView {
    let Some(Hold::Placed(hold)) = world.holds.get(&hold_id) else { unreachable!("decided on a placed hold") };
    let Some(Wallet::Open(wallet)) = world.wallets.get(&hold.wallet_id) else {
        unreachable!("holds are on open wallets")
    };
    let scale = hold.scale;
    let version = heads.get(&StreamId::Wallet(hold.wallet_id)).map_or(0, |head| head.version);
    HoldView {
        hold_id,
        wallet_id: hold.wallet_id,
        asset: hold.asset.to_string(),
        amount: scale.format(hold.amount),
        captured: scale.format(hold.captured),
        released: scale.format(hold.released),
        remaining: scale.format(hold.remaining()),
        status: hold.status.as_str().to_owned(),
        expires_at: hold.expires_at,
        reference: hold.reference.clone(),
        metadata: hold.metadata.clone(),
        captures: hold.captures.clone(),
        created_at: hold.created_at,
        resolved_at: hold.resolved_at,
        wallet: HoldWalletView {
            balance: scale.format(wallet.balance),
            held: scale.format(wallet.held),
            available: scale.format(wallet.available()),
            version,
        },
        position: None,
    }
}

fn wallet_view(
    world: &World,
    heads: &HashMap<StreamId, StreamHead>,
    wallet_id: WalletId,
    metadata: serde_json::Value,
) -> serde_json::Value {
    let Some(Wallet::Open(open)) = world.wallets.get(&wallet_id) else { unreachable!("decided on an open wallet") };
    let head = heads.get(&StreamId::Wallet(wallet_id)).copied().unwrap_or(StreamHead::EMPTY);
    json!(WalletView {
        wallet_id,
        owner_id: open.owner_id.clone(),
        asset: open.asset.to_string(),
        kind: open.kind.as_str().to_owned(),
        status: open.status.as_str().to_owned(),
        balance: open.scale.format(open.balance),
        held: open.scale.format(open.held),
        available: open.scale.format(open.available()),
        overdraft_limit: open.overdraft_limit.map(|limit| open.scale.format(limit)),
        version: head.version,
        metadata,
        // The first event's time and the last one's: a status change that appended nothing reports the
        // wallet as it stands.
        opened_at: head.created_at,
        updated_at: head.recorded_at,
        position: None,
    })
}

fn transfer_view(changes: &[Change], heads: &HashMap<StreamId, StreamHead>, now: DateTime<Utc>) -> TransferView {
    let recorded = changes
        .iter()
        .find_map(|change| match &change.event {
            Event::Transfer(TransferEvent::TransferRecorded(recorded)) => Some(recorded),
            _ => None,
        })
        .expect("a money command records its transfer");
    let scale = recorded.scale;
    // Each touched wallet's balance and version after this command: its last posting here.
    let mut versions: HashMap<&StreamId, i64> = HashMap::new();
    let mut balances: Vec<BalanceView> = Vec::new();
    let postings = changes.iter().filter_map(|change| match (&change.stream, &change.event) {
        (
            StreamId::Wallet(id),
            Event::Wallet(WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting)),
        ) => Some((&change.stream, *id, posting)),
        _ => None,
    });
    let counts = changes.iter().fold(HashMap::new(), |mut counts: HashMap<&StreamId, i64>, change| {
        *counts.entry(&change.stream).or_default() += 1;
        counts
    });
    for (stream, wallet_id, posting) in postings {
        let seen = versions.entry(stream).or_default();
        *seen += 1;
        let version = heads[stream].version - counts[stream] + *seen;
        let balance = scale.format(posting.balance_after);
        match balances.iter_mut().find(|view| view.wallet_id == wallet_id) {
            Some(view) => {
                view.balance = balance;
                view.version = version;
            }
            None => balances.push(BalanceView { wallet_id, balance, version }),
        }
    }
    TransferView {
        transfer_id: recorded.transfer_id,
        kind: recorded.kind.as_str().to_owned(),
        asset: recorded.asset.to_string(),
        amount: scale.format(recorded.amount),
        fee: scale.format(recorded.fee),
        legs: recorded
            .legs
            .iter()
            .map(|leg| LegView {
                from_wallet_id: leg.from_wallet_id,
                to_wallet_id: leg.to_wallet_id,
                amount: scale.format(leg.amount),
            })
            .collect(),
        balances,
        reference: recorded.reference.clone(),
        metadata: recorded.metadata.clone(),
        reverses: recorded.reverses,
        reason: recorded.reason.clone(),
        hold_id: recorded.hold_id,
        position: 0,
        recorded_at: now,
        reversals: None,
        hold: None,
    }
}
