//! [`Answer`]: what a command answers, a status and a JSON body, as it is sent, stored under its
//! idempotency key, and replayed. Its position is filled in by [`Answer::with_position`] and nowhere else.

use serde_json::json;
use tally_shared::api::{Problem, ProblemCode};

/// The answer to a command: sent once, stored under its idempotency key (without its position, which
/// the store keeps in a column of its own), and replayed for a retry with the same key.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    /// A refusal, answered as its problem.
    pub fn refusal(problem: &Problem) -> Answer {
        Answer { status: problem.status, body: json!(problem) }
    }

    /// The answer to a key used again with a different request. It is never stored (the key's first
    /// answer stays the key's), so a retry of the first request still replays the first answer.
    pub fn key_reused() -> Answer {
        Answer::refusal(&Problem::new(
            ProblemCode::IdempotencyKeyReused,
            "this idempotency key was used with a different request; use a new key for a new request",
        ))
    }

    /// Whether the body shows a position: only successes have one to show.
    pub fn shows_position(&self) -> bool {
        self.status < 300
    }

    /// The answer with its body's `position` set: the global position of the command's last event (or, for
    /// a command that appended nothing, of its stream's). The one place a position enters an answer, for a
    /// fresh answer and a replayed one alike.
    pub fn with_position(mut self, position: Option<i64>) -> Answer {
        if let (Some(position), true) = (position, self.shows_position()) {
            if let Some(fields) = self.body.as_object_mut() {
                fields.insert("position".to_owned(), json!(position));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_shows_its_position_and_a_refusal_does_not() {
        let success = Answer { status: 201, body: json!({"transfer_id": "t"}) };
        assert_eq!(success.with_position(Some(7)).body, json!({"transfer_id": "t", "position": 7}));
        let refusal = Answer::refusal(&Problem::new(ProblemCode::InsufficientFunds, "no"));
        assert_eq!(refusal.clone().with_position(Some(7)), refusal);
    }

    #[test]
    fn a_position_already_shown_is_replaced_not_duplicated() {
        let stored = Answer { status: 200, body: json!({"position": 3}) };
        assert_eq!(stored.with_position(Some(3)).body, json!({"position": 3}));
    }
}
