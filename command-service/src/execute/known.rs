//! [`Known`]: the latest state of each stream (asset or wallet) this process knows, from its own writes and
//! its reads, with its head; shared by the appenders. Batches are decided against it without a read, and
//! written only if every stream is still at the version known here; when one is not, it is forgotten and
//! read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tally_shared::envelope::StreamId;

use super::stream_state::StreamState;
use crate::event_store::StreamHead;

/// Streams (assets and wallets) whose latest state the process keeps at most, before it starts over.
const KNOWN_STREAMS_MAX: usize = 100_000;

#[derive(Clone, Default)]
pub struct Known {
    streams: Arc<Mutex<HashMap<StreamId, (StreamHead, StreamState)>>>,
}

impl Known {
    pub fn get(&self, stream: &StreamId) -> Option<(StreamHead, StreamState)> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).get(stream).cloned()
    }

    /// Keeps the latest state of an existing stream, unless a newer one is known already. Transfers are not
    /// kept: every money command makes one and only a reversal ever reads it again, so keeping them would
    /// only grow the map.
    pub fn remember(&self, stream: StreamId, head: StreamHead, state: StreamState) {
        if matches!(state, StreamState::Transfer(_)) || !state.exists() {
            return;
        }
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if streams.len() >= KNOWN_STREAMS_MAX && !streams.contains_key(&stream) {
            streams.clear();
        }
        match streams.get(&stream) {
            Some((newer, _)) if newer.version > head.version => {}
            _ => {
                streams.insert(stream, (head, state));
            }
        }
    }

    /// Forgets these streams: what this process knew of them may be out of date.
    pub fn forget<'a>(&self, streams: impl IntoIterator<Item = &'a StreamId>) {
        let mut known = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for stream in streams {
            known.remove(stream);
        }
    }

    pub fn clear(&self) {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
