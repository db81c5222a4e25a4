//! A linearizability checker for KV histories, in the manner of Wing and
//! Gong with Lowe's memoization: a depth-first search for an order of the
//! operations that respects real time (an operation that completed before
//! another was invoked comes first) and that the sequential [`KvState`]
//! model accepts, revisions included. Operations whose answer was lost may
//! take effect at any point after their invocation, or never; reads whose
//! answer was lost are left out.
//!
//! The search is bounded by a number of explored states. When no order
//! exists, the report shows the longest order found and the operations
//! none of which could come next: the smallest window around the failure.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::history::{History, Operation, Request, Response, TimeMs};
use crate::kv_model::KvState;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Violation(Violation),
    /// The search gave up after exploring this many states.
    Undecided {
        explored: usize,
    },
}

/// A history with no valid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The longest order of operations the model accepted.
    pub longest: Vec<Operation>,
    /// The store after `longest`.
    pub state: KvState,
    /// The operations that could come next in real time, none of which
    /// the model accepts there.
    pub stuck: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_MAX: usize = 8;
        writeln!(
            f,
            "no linearization: {} operations fit, then the store is at revision {} with {:?}",
            self.longest.len(),
            self.state.revision,
            self.state.keys
        )?;
        let skip = self.longest.len().saturating_sub(SHOWN_MAX);
        for op in &self.longest[skip..] {
            writeln!(f, "  fits:  {op:?}")?;
        }
        for op in &self.stuck {
            writeln!(f, "  stuck: {op:?}")?;
        }
        Ok(())
    }
}

/// One search step: the operations linearized so far and the store.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Node {
    done: Vec<u64>,
    state: KvState,
}

fn set_done(done: &mut [u64], i: usize) {
    done[i / 64] |= 1 << (i % 64);
}

/// Checks `history` against the KV model from an empty store, exploring
/// at most `max_explored` search states.
pub fn check(history: &History, max_explored: usize) -> Verdict {
    check_from(KvState::default(), history, max_explored)
}

/// Checks `history` against the KV model starting at `initial`.
pub fn check_from(initial: KvState, history: &History, max_explored: usize) -> Verdict {
    // Reads whose answer was lost say nothing.
    let mut ops: Vec<Operation> = history
        .operations
        .iter()
        .filter(|op| op.completed.is_some() || !op.is_read_only())
        .cloned()
        .collect();
    ops.sort_by_key(|op| (op.invoked_ms, op.deadline_ms()));
    let required = ops.iter().filter(|op| op.completed.is_some()).count();
    let hints = try_orders(&ops);
    let start = Node {
        done: vec![0; ops.len().div_ceil(64)],
        state: initial,
    };
    let mut seen: HashSet<Node> = HashSet::new();
    // Each frame: a node, its order so far, and the candidates left to try.
    let mut stack: Vec<(Node, Vec<usize>, Vec<usize>)> = Vec::new();
    let first = candidates(&ops, &hints, &start.done);
    stack.push((start, Vec::new(), first));
    let mut best: Option<(Vec<usize>, KvState, Vec<usize>)> = None;
    let mut explored = 0;
    while let Some((node, order, mut untried)) = stack.pop() {
        let linearized_required = order
            .iter()
            .filter(|&&i| ops[i].completed.is_some())
            .count();
        if linearized_required == required {
            return Verdict::Linearizable;
        }
        let Some(next) = untried.pop() else {
            let longer = best.as_ref().is_none_or(|(o, _, _)| order.len() > o.len());
            if longer {
                let stuck = candidates(&ops, &hints, &node.done);
                best = Some((order, node.state, stuck));
            }
            continue;
        };
        let op = &ops[next];
        let observed = op.completed.as_ref().map(|(_, response)| response);
        let stepped = node.state.step(&op.request, observed);
        let parent = (node.clone(), order.clone(), untried);
        stack.push(parent);
        let Some(state) = stepped else { continue };
        let mut done = node.done.clone();
        set_done(&mut done, next);
        let child = Node { done, state };
        if !seen.insert(child.clone()) {
            continue;
        }
        explored += 1;
        if explored > max_explored {
            return Verdict::Undecided { explored };
        }
        let mut child_order = order;
        child_order.push(next);
        let child_candidates = candidates(&ops, &hints, &child.done);
        stack.push((child, child_order, child_candidates));
    }
    let (order, state, stuck) = best.unwrap_or_default();
    Verdict::Violation(Violation {
        longest: order.iter().map(|&i| ops[i].clone()).collect(),
        state,
        stuck: stuck.iter().map(|&i| ops[i].clone()).collect(),
    })
}

/// The operations that may come next: not yet linearized, and invoked
/// before every pending operation with a known answer completed; the last
/// is tried first (see [`try_order`]).
fn candidates(ops: &[Operation], hints: &[TryOrder], done: &[u64]) -> Vec<usize> {
    // `ops` is sorted by invocation, and an operation completes after its
    // invocation: once an operation is invoked after the earliest pending
    // completion seen so far, no later one can come next. Done operations
    // are skipped a word of the bitset at a time.
    let mut horizon = u64::MAX;
    let mut next = Vec::new();
    'words: for (w, &word) in done.iter().enumerate() {
        let mut pending = !word;
        while pending != 0 {
            let i = w * 64 + pending.trailing_zeros() as usize;
            pending &= pending - 1;
            let Some(op) = ops.get(i) else {
                break 'words;
            };
            if op.invoked_ms > horizon {
                break 'words;
            }
            horizon = horizon.min(op.deadline_ms());
            next.push(i);
        }
    }
    next.retain(|&i| ops[i].invoked_ms <= horizon);
    next.sort_by_key(|&i| std::cmp::Reverse(hints[i]));
    next
}

/// Which candidate to try first (the smallest): the one whose answer
/// names the lowest revision, a change before the reads that saw it, then
/// the earliest completion. For a correct store this is the order the
/// revisions already tell, so the search rarely backtracks.
type TryOrder = (i64, bool, TimeMs);

/// The try order of every operation. A write whose answer was lost takes
/// the revision a read saw its value at (values are unique), else it goes
/// last: unseen, it may as well never have happened.
fn try_orders(ops: &[Operation]) -> Vec<TryOrder> {
    let mut seen_at: HashMap<(&str, &str), i64> = HashMap::new();
    for op in ops {
        if let (
            Request::Get { key },
            Some((
                _,
                Response::Get {
                    found: Some((value, at)),
                    ..
                },
            )),
        ) = (&op.request, &op.completed)
        {
            seen_at.insert((key.as_str(), value.as_str()), *at);
        }
    }
    ops.iter()
        .map(|op| match &op.completed {
            Some((at, response)) => (response.revision(), !response.is_change(), *at),
            None => {
                let written = match &op.request {
                    Request::Put { key, value } | Request::CompareAndSet { key, value, .. } => {
                        seen_at.get(&(key.as_str(), value.as_str())).copied()
                    }
                    _ => None,
                };
                (written.unwrap_or(i64::MAX), false, TimeMs::MAX)
            }
        })
        .collect()
}
