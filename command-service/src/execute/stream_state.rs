//! [`StreamState`]: the state of one stream, of whichever kind, and its snapshot encoding (the `state`
//! column of `streams`).

use tally_shared::asset::Asset;
use tally_shared::envelope::StreamId;
use tally_shared::hold::Hold;
use tally_shared::ledger::World;
use tally_shared::transfer::Transfer;
use tally_shared::wallet::Wallet;

#[derive(Debug, Clone, PartialEq)]
pub enum StreamState {
    Asset(Asset),
    Wallet(Wallet),
    Transfer(Transfer),
    Hold(Hold),
}

impl StreamState {
    pub fn from_snapshot(stream: &StreamId, state: serde_json::Value) -> serde_json::Result<StreamState> {
        Ok(match stream {
            StreamId::Asset(_) => StreamState::Asset(serde_json::from_value(state)?),
            StreamId::Wallet(_) => StreamState::Wallet(serde_json::from_value(state)?),
            StreamId::Transfer(_) => StreamState::Transfer(serde_json::from_value(state)?),
            StreamId::Hold(_) => StreamState::Hold(serde_json::from_value(state)?),
        })
    }

    /// The state of a stream that has no event yet.
    pub fn empty(stream: &StreamId) -> StreamState {
        StreamState::of(&World::default(), stream)
    }

    /// The stream's state in `world` (empty if the world does not hold it).
    pub fn of(world: &World, stream: &StreamId) -> StreamState {
        match stream {
            StreamId::Asset(code) => StreamState::Asset(world.assets.get(code).cloned().unwrap_or_default()),
            StreamId::Wallet(id) => StreamState::Wallet(world.wallets.get(id).cloned().unwrap_or_default()),
            StreamId::Transfer(id) => StreamState::Transfer(world.transfers.get(id).cloned().unwrap_or_default()),
            StreamId::Hold(id) => StreamState::Hold(world.holds.get(id).cloned().unwrap_or_default()),
        }
    }

    /// The snapshot's JSON text, serialized straight from the state (no intermediate `Value`).
    pub fn to_snapshot(&self) -> String {
        let text = match self {
            StreamState::Asset(state) => serde_json::to_string(state),
            StreamState::Wallet(state) => serde_json::to_string(state),
            StreamState::Transfer(state) => serde_json::to_string(state),
            StreamState::Hold(state) => serde_json::to_string(state),
        };
        text.expect("states serialize to JSON")
    }

    /// Whether the stream has any event.
    pub fn exists(&self) -> bool {
        !matches!(
            self,
            StreamState::Asset(Asset::Undefined)
                | StreamState::Wallet(Wallet::Unopened)
                | StreamState::Transfer(Transfer::Unrecorded)
                | StreamState::Hold(Hold::Unplaced)
        )
    }

    /// Puts this state into `world` as `stream`'s.
    pub fn put(self, world: &mut World, stream: &StreamId) {
        match (stream, self) {
            (StreamId::Asset(code), StreamState::Asset(state)) => {
                world.assets.insert(code.clone(), state);
            }
            (StreamId::Wallet(id), StreamState::Wallet(state)) => {
                world.wallets.insert(*id, state);
            }
            (StreamId::Transfer(id), StreamState::Transfer(state)) => {
                world.transfers.insert(*id, state);
            }
            (StreamId::Hold(id), StreamState::Hold(state)) => {
                world.holds.insert(*id, state);
            }
            (stream, state) => unreachable!("state {state:?} loaded for stream {stream}"),
        }
    }
}
