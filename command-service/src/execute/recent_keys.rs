//! Hashes of the idempotency keys this process answered lately, shared by the appenders. A batch whose keys
//! are all new here skips reading stored answers: the key's primary key still refuses one that was used
//! (by another process, or before a restart), and the batch is then decided again after reading them.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

use super::CommandRequest;

/// Idempotency keys remembered as answered by this process, at most (their hashes: 8 bytes and a slot each).
const RECENT_KEYS_MAX: usize = 200_000;

#[derive(Clone)]
pub struct RecentKeys {
    inner: Arc<Mutex<Recent>>,
    hasher: std::hash::RandomState,
}

#[derive(Default)]
struct Recent {
    seen: HashSet<u64>,
    /// Oldest first, to forget in the order remembered.
    order: VecDeque<u64>,
}

impl RecentKeys {
    pub fn new() -> RecentKeys {
        RecentKeys { inner: Arc::default(), hasher: std::hash::RandomState::new() }
    }

    fn hash(&self, request: &CommandRequest) -> u64 {
        self.hasher.hash_one((&request.principal, &request.idempotency_key))
    }

    /// Whether any of these keys may have been answered here (a hash collision only costs a read).
    pub fn any_seen(&self, requests: &[&CommandRequest]) -> bool {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        requests.iter().any(|request| inner.seen.contains(&self.hash(request)))
    }

    pub fn remember(&self, requests: &[&CommandRequest]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for request in requests {
            let hash = self.hash(request);
            if inner.seen.insert(hash) {
                inner.order.push_back(hash);
            }
        }
        while inner.order.len() > RECENT_KEYS_MAX {
            if let Some(oldest) = inner.order.pop_front() {
                inner.seen.remove(&oldest);
            }
        }
    }
}
