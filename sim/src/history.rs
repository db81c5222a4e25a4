//! What clients did and saw: each KV operation with its invocation and
//! completion times and what the server answered, as the linearizability
//! checker reads it.

/// Simulated milliseconds.
pub type TimeMs = u64;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Put {
        key: String,
        value: String,
    },
    /// A linearizable read of one key.
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// Put `value` if the key's value is `expected` (`None`: the key is
    /// absent), as a txn with one compare.
    CompareAndSet {
        key: String,
        expected: Option<String>,
        value: String,
    },
}

/// What the server answered. Every answer carries the store revision of
/// its response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Put {
        revision: i64,
    },
    Get {
        revision: i64,
        /// The value and the revision that last modified it.
        found: Option<(String, i64)>,
    },
    Delete {
        revision: i64,
        deleted: u64,
    },
    CompareAndSet {
        revision: i64,
        succeeded: bool,
    },
}

impl Request {
    pub fn key(&self) -> &str {
        match self {
            Request::Put { key, .. }
            | Request::Get { key }
            | Request::Delete { key }
            | Request::CompareAndSet { key, .. } => key,
        }
    }
}

impl Response {
    /// The store revision of the answer's header.
    pub fn revision(&self) -> i64 {
        match self {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::Delete { revision, .. }
            | Response::CompareAndSet { revision, .. } => *revision,
        }
    }

    /// Whether the operation changed the store (and so took a revision of
    /// its own).
    pub fn is_change(&self) -> bool {
        match self {
            Response::Put { .. } => true,
            Response::Get { .. } => false,
            Response::Delete { deleted, .. } => *deleted > 0,
            Response::CompareAndSet { succeeded, .. } => *succeeded,
        }
    }
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: u32,
    pub invoked_ms: TimeMs,
    pub request: Request,
    /// `None` when the outcome is unknown (a timeout, a lost connection):
    /// the operation may have taken effect at any time after its
    /// invocation, or never.
    pub completed: Option<(TimeMs, Response)>,
}

impl Operation {
    /// Whether the operation could not have changed the store.
    pub fn is_read_only(&self) -> bool {
        matches!(self.request, Request::Get { .. })
    }

    /// When the operation must have taken effect by, if it did.
    pub fn deadline_ms(&self) -> TimeMs {
        self.completed.as_ref().map_or(TimeMs::MAX, |(at, _)| *at)
    }
}

/// A history as the workload records it, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub operations: Vec<Operation>,
}

impl History {
    pub fn push(&mut self, operation: Operation) {
        assert!(
            operation
                .completed
                .as_ref()
                .is_none_or(|(at, _)| *at >= operation.invoked_ms),
            "an operation completes after its invocation"
        );
        self.operations.push(operation);
    }
}
