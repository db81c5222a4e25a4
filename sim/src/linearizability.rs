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

use std::collections::HashSet;
use std::fmt;

use crate::history::{History, Operation};
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

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn set_done(done: &mut [u64], i: usize) {
    done[i / 64] |= 1 << (i % 64);
}

/// Checks `history` against the KV model, exploring at most
/// `max_explored` search states.
pub fn check(history: &History, max_explored: usize) -> Verdict {
    // Reads whose answer was lost say nothing.
    let mut ops: Vec<Operation> = history
        .operations
        .iter()
        .filter(|op| op.completed.is_some() || !op.is_read_only())
        .cloned()
        .collect();
    ops.sort_by_key(|op| (op.invoked_ms, op.deadline_ms()));
    let required = ops.iter().filter(|op| op.completed.is_some()).count();
    let start = Node {
        done: vec![0; ops.len().div_ceil(64)],
        state: KvState::default(),
    };
    let mut seen: HashSet<Node> = HashSet::new();
    // Each frame: a node, its order so far, and the candidates left to try.
    let mut stack: Vec<(Node, Vec<usize>, Vec<usize>)> = Vec::new();
    let first = candidates(&ops, &start.done);
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
                let stuck = candidates(&ops, &node.done);
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
        let child_candidates = candidates(&ops, &child.done);
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
/// before every pending operation with a known answer completed. Ordered so
/// that the last (tried first) completes earliest; operations whose answer
/// was lost come first (tried last).
fn candidates(ops: &[Operation], done: &[u64]) -> Vec<usize> {
    // `ops` is sorted by invocation, and an operation completes after its
    // invocation: once an operation is invoked after the earliest pending
    // completion seen so far, no later one can come next.
    let mut horizon = u64::MAX;
    let mut next = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.invoked_ms > horizon {
            break;
        }
        if !is_done(done, i) {
            horizon = horizon.min(op.deadline_ms());
            next.push(i);
        }
    }
    next.retain(|&i| ops[i].invoked_ms <= horizon);
    next.sort_by_key(|&i| std::cmp::Reverse(ops[i].deadline_ms()));
    next
}
