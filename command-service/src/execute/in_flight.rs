//! Idempotency keys in flight in this process: a duplicate of a key still being processed waits for the
//! first request and replays its reply, instead of reaching the database at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::{Answer, KeyId, Reply};

/// The keys in flight, shared by every request of the process.
#[derive(Clone, Default)]
pub struct InFlightKeys {
    keys: Arc<Mutex<HashMap<KeyId, InFlight>>>,
}

struct InFlight {
    fingerprint: [u8; 32],
    done: watch::Receiver<Option<Reply>>,
}

/// What [`InFlightKeys::claim`] found.
pub enum Claim {
    /// No request holds the key: this one does until its ticket is dropped.
    First(Ticket),
    /// The same request is in flight: wait for its reply.
    Duplicate(Waiter),
    /// A different request is in flight under the key.
    Reused,
}

impl InFlightKeys {
    pub fn claim(&self, key: KeyId, fingerprint: [u8; 32]) -> Claim {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get(&key) {
            Some(first) if first.fingerprint != fingerprint => Claim::Reused,
            Some(first) => Claim::Duplicate(Waiter { done: first.done.clone() }),
            None => {
                let (sender, done) = watch::channel(None);
                keys.insert(key.clone(), InFlight { fingerprint, done });
                Claim::First(Ticket { keys: self.clone(), key, sender })
            }
        }
    }
}

/// Holds a key in flight; however its request ends (answered, failed, or dropped by a gone client), dropping
/// the ticket frees the key.
pub struct Ticket {
    keys: InFlightKeys,
    key: KeyId,
    sender: watch::Sender<Option<Reply>>,
}

impl Ticket {
    /// Hands the reply to every duplicate waiting for it.
    pub fn finish(self, reply: &Reply) {
        self.sender.send_replace(Some(reply.clone()));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.keys.keys.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// A duplicate waiting for the first request of its key.
pub struct Waiter {
    done: watch::Receiver<Option<Reply>>,
}

impl Waiter {
    /// The first request's answer, replayed; `None` if it did not come within `wait` (or never will: the
    /// first request failed without an answer, which is not stored, so the client may retry).
    pub async fn replay(mut self, wait: Duration) -> Option<Reply> {
        let finished = tokio::time::timeout(wait, self.done.wait_for(Option::is_some)).await;
        let answer: Answer = finished.ok()?.ok()?.as_ref()?.answer.clone();
        Some(Reply { answer, replayed: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyId {
        ("principal".to_owned(), name.to_owned())
    }

    fn reply() -> Reply {
        Reply { answer: Answer { status: 201, body: serde_json::json!({"ok": true}) }, replayed: false }
    }

    #[tokio::test]
    async fn a_duplicate_waits_for_the_first_and_replays_its_reply() {
        let keys = InFlightKeys::default();
        let Claim::First(ticket) = keys.claim(key("k"), [1; 32]) else { panic!("the first claim holds the key") };
        let Claim::Duplicate(waiter) = keys.claim(key("k"), [1; 32]) else { panic!("a duplicate waits") };
        let waiting = tokio::spawn(waiter.replay(Duration::from_secs(5)));
        ticket.finish(&reply());
        let replayed = waiting.await.unwrap().expect("the first request answered");
        assert_eq!(replayed, Reply { replayed: true, ..reply() });
    }

    #[test]
    fn another_request_under_a_key_in_flight_is_refused_as_reused() {
        let keys = InFlightKeys::default();
        let _ticket = keys.claim(key("k"), [1; 32]);
        assert!(matches!(keys.claim(key("k"), [2; 32]), Claim::Reused));
    }

    #[tokio::test]
    async fn a_dropped_ticket_frees_its_key_and_its_waiters_get_nothing() {
        let keys = InFlightKeys::default();
        let Claim::First(ticket) = keys.claim(key("k"), [1; 32]) else { panic!("the first claim holds the key") };
        let Claim::Duplicate(waiter) = keys.claim(key("k"), [1; 32]) else { panic!("a duplicate waits") };
        drop(ticket);
        assert_eq!(waiter.replay(Duration::from_secs(5)).await, None);
        assert!(matches!(keys.claim(key("k"), [1; 32]), Claim::First(_)));
    }
}
