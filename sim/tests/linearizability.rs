//! The linearizability checker accepts what a correct store can answer and
//! catches planted anomalies: stale reads, lost writes, reused revisions,
//! values nobody wrote, changes out of real-time order.

use e2d_sim::history::{History, Operation, Request, Response};
use e2d_sim::kv_model::KvState;
use e2d_sim::linearizability::{check, Verdict};
use proptest::prelude::*;

const BUDGET: usize = 200_000;

fn op(client: u32, from: u64, to: u64, request: Request, response: Response) -> Operation {
    Operation {
        client,
        invoked_ms: from,
        request,
        completed: Some((to, response)),
    }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> Request {
    Request::Get { key: key.into() }
}

fn seen(revision: i64, found: Option<(&str, i64)>) -> Response {
    Response::Get {
        revision,
        found: found.map(|(v, r)| (v.to_string(), r)),
    }
}

fn history(ops: Vec<Operation>) -> History {
    let mut history = History::default();
    for op in ops {
        history.push(op);
    }
    history
}

fn violation(history: &History) -> e2d_sim::linearizability::Violation {
    match check(history, BUDGET) {
        Verdict::Violation(v) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn a_read_during_a_write_may_see_either_value() {
    for found in [None, Some(("1", 1))] {
        let revision = if found.is_some() { 1 } else { 0 };
        let h = history(vec![
            op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
            op(2, 5, 8, get("a"), seen(revision, found)),
        ]);
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable, "{found:?}");
    }
}

#[test]
fn a_stale_read_after_a_write_completed_is_caught() {
    let h = history(vec![
        op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
        op(2, 20, 30, get("a"), seen(0, None)),
    ]);
    let v = violation(&h);
    assert_eq!(v.longest.len(), 1, "{v}");
    assert!(v.stuck.iter().any(|o| o.client == 2), "{v}");
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    let h = history(vec![
        op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
        op(1, 11, 20, put("b", "2"), Response::Put { revision: 2 }),
        // "a" gone, while the revision says both writes happened.
        op(2, 30, 40, get("a"), seen(2, None)),
    ]);
    violation(&h);
}

#[test]
fn two_writes_with_one_revision_are_caught() {
    let h = history(vec![
        op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
        op(2, 0, 10, put("b", "1"), Response::Put { revision: 1 }),
    ]);
    violation(&h);
}

#[test]
fn a_value_nobody_wrote_is_caught() {
    let h = history(vec![op(2, 0, 10, get("a"), seen(0, Some(("x", 1))))]);
    violation(&h);
}

#[test]
fn a_write_with_a_lost_answer_may_or_may_not_have_happened() {
    let unknown = Operation {
        client: 1,
        invoked_ms: 0,
        request: put("a", "1"),
        completed: None,
    };
    let observed = history(vec![
        unknown.clone(),
        op(2, 50, 60, get("a"), seen(1, Some(("1", 1)))),
    ]);
    assert_eq!(check(&observed, BUDGET), Verdict::Linearizable);
    let not_observed = history(vec![
        unknown.clone(),
        op(2, 50, 60, get("a"), seen(0, None)),
    ]);
    assert_eq!(check(&not_observed, BUDGET), Verdict::Linearizable);
    // But not before it was invoked.
    let early = history(vec![
        Operation {
            invoked_ms: 100,
            ..unknown
        },
        op(2, 50, 60, get("a"), seen(1, Some(("1", 1)))),
    ]);
    violation(&early);
}

#[test]
fn compare_and_set_follows_the_value_it_compared() {
    let cas = Request::CompareAndSet {
        key: "a".into(),
        expected: Some("1".into()),
        value: "2".into(),
    };
    let ok = history(vec![
        op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
        op(
            2,
            20,
            30,
            cas.clone(),
            Response::CompareAndSet {
                revision: 2,
                succeeded: true,
            },
        ),
    ]);
    assert_eq!(check(&ok, BUDGET), Verdict::Linearizable);
    // Two clients both win the same compare: one of them lies.
    let both = history(vec![
        op(1, 0, 10, put("a", "1"), Response::Put { revision: 1 }),
        op(
            2,
            20,
            30,
            cas.clone(),
            Response::CompareAndSet {
                revision: 2,
                succeeded: true,
            },
        ),
        op(
            3,
            20,
            30,
            cas,
            Response::CompareAndSet {
                revision: 3,
                succeeded: true,
            },
        ),
    ]);
    violation(&both);
}

/// A correct store: each operation takes effect at a point inside its
/// window, in the order of those points, and answers from the model; some
/// answers are lost.
fn correct_history(specs: &[(u8, u8, u8, u8, u8, bool)]) -> History {
    let mut planned: Vec<(u64, u64, u64, Request, bool)> = specs
        .iter()
        .enumerate()
        .map(|(i, &(kind, key, start, length, point, lost))| {
            let key = format!("k{}", key % 3);
            let value = format!("v{i}");
            let request = match kind % 4 {
                0 => Request::Put { key, value },
                1 => Request::Get { key },
                2 => Request::Delete { key },
                _ => Request::CompareAndSet {
                    key,
                    expected: Some(format!("v{}", i.saturating_sub(1))),
                    value,
                },
            };
            let start = u64::from(start);
            let length = u64::from(length) + 1;
            let at = start + u64::from(point) % length;
            (start, at, start + length, request, lost)
        })
        .collect();
    planned.sort_by_key(|(_, at, _, _, _)| *at);
    let mut state = KvState::default();
    let mut history = History::default();
    for (client, (start, _, end, request, lost)) in planned.into_iter().enumerate() {
        let response = answer(&state, &request);
        state = state
            .step(&request, Some(&response))
            .expect("the model's own answer");
        history.push(Operation {
            client: client as u32,
            invoked_ms: start,
            request,
            completed: (!lost).then_some((end, response)),
        });
    }
    history
}

/// The model's answer to `request` in `state`.
fn answer(state: &KvState, request: &Request) -> Response {
    let next = state
        .step(request, None)
        .expect("no observation to contradict");
    match request {
        Request::Put { .. } => Response::Put {
            revision: next.revision,
        },
        Request::Get { key } => Response::Get {
            revision: state.revision,
            found: state.keys.get(key).cloned(),
        },
        Request::Delete { .. } => Response::Delete {
            revision: next.revision,
            deleted: u64::from(next.revision != state.revision),
        },
        Request::CompareAndSet { .. } => Response::CompareAndSet {
            revision: next.revision,
            succeeded: next.revision != state.revision,
        },
    }
}

fn specs() -> impl Strategy<Value = Vec<(u8, u8, u8, u8, u8, bool)>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<u8>(),
            0u8..100,
            0u8..20,
            any::<u8>(),
            prop::bool::weighted(0.1),
        ),
        1..40,
    )
}

proptest! {
    #[test]
    fn histories_of_a_correct_store_are_linearizable(specs in specs()) {
        let history = correct_history(&specs);
        prop_assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_reused_revision_is_always_caught(specs in specs(), pick in any::<prop::sample::Index>()) {
        let mut history = correct_history(&specs);
        // Two acknowledged changes that claim one revision.
        let changes: Vec<usize> = history
            .operations
            .iter()
            .enumerate()
            .filter(|(_, op)| match &op.completed {
                Some((_, Response::Put { .. })) => true,
                Some((_, Response::Delete { deleted, .. })) => *deleted > 0,
                Some((_, Response::CompareAndSet { succeeded, .. })) => *succeeded,
                _ => false,
            })
            .map(|(i, _)| i)
            .collect();
        prop_assume!(changes.len() >= 2);
        let victim = changes[pick.index(changes.len() - 1) + 1];
        let donor_revision = match &history.operations[changes[0]].completed {
            Some((_, Response::Put { revision }))
            | Some((_, Response::Delete { revision, .. }))
            | Some((_, Response::CompareAndSet { revision, .. })) => *revision,
            _ => unreachable!("a change"),
        };
        if let Some((_, response)) = &mut history.operations[victim].completed {
            match response {
                Response::Put { revision }
                | Response::Delete { revision, .. }
                | Response::CompareAndSet { revision, .. } => *revision = donor_revision,
                Response::Get { .. } => unreachable!("a change"),
            }
        }
        let caught = matches!(check(&history, BUDGET), Verdict::Violation(_));
        prop_assert!(caught);
    }
}

#[test]
fn a_long_concurrent_history_is_decided_within_the_budget() {
    const OPS: usize = 2_000;
    let mut rng = e2d_sim::core::rng::Rng::new(7);
    let specs: Vec<(u8, u8, u8, u8, u8, bool)> = (0..OPS)
        .map(|_| {
            let r = rng.next_u64().to_le_bytes();
            (r[0], r[1], 0, r[3] % 20, r[4], r[5] < 3)
        })
        .collect();
    // Spread the windows over time: each op starts a little after the last.
    let mut history = correct_history(&specs);
    history.operations.sort_by_key(|op| op.client);
    for (i, op) in history.operations.iter_mut().enumerate() {
        let shift = i as u64 * 5;
        op.invoked_ms += shift;
        if let Some((at, _)) = &mut op.completed {
            *at += shift;
        }
    }
    let started = std::time::Instant::now();
    let verdict = check(&history, BUDGET);
    println!("{OPS} operations checked in {:?}", started.elapsed());
    assert_eq!(verdict, Verdict::Linearizable);
}
