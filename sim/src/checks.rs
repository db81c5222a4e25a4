//! Checkers beside linearizability: durability of acknowledged writes,
//! agreement of the replicas, the watch guarantees, and one cluster
//! identity. Each returns what it found wrong, in words.

use std::collections::BTreeMap;

use crate::history::{History, Request, Response};

/// One change as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    /// Which response carried it (numbered across resumed streams).
    pub response: u64,
}

/// What a watcher saw: the events in arrival order, and how many streams
/// it took.
#[derive(Debug, Default)]
pub struct WatchLog {
    pub events: Vec<SeenEvent>,
    pub resumes: u64,
}

/// Key → (value, modification revision), as a member serves it.
pub type Contents = BTreeMap<String, (String, i64)>;

/// A write the cluster acknowledged: what it left on its key, at which
/// revision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AckedWrite {
    revision: i64,
    /// `None` for a delete.
    value: Option<String>,
}

/// The acknowledged writes of `history` by key, in revision order.
fn acked_writes(history: &History) -> BTreeMap<String, Vec<AckedWrite>> {
    let mut writes: BTreeMap<String, Vec<AckedWrite>> = BTreeMap::new();
    for op in &history.operations {
        let Some((_, response)) = op.completed.as_ref().filter(|(_, r)| r.is_change()) else {
            continue;
        };
        let value = match &op.request {
            Request::Put { value, .. } | Request::CompareAndSet { value, .. } => {
                Some(value.clone())
            }
            Request::Delete { .. } => None,
            Request::Get { .. } => continue,
        };
        writes
            .entry(op.request.key().to_string())
            .or_default()
            .push(AckedWrite {
                revision: response.revision(),
                value,
            });
    }
    for list in writes.values_mut() {
        list.sort_by_key(|w| w.revision);
    }
    writes
}

/// Every acknowledged write must still be there in `contents` (read
/// linearizably after the faults), unless a later write replaced it: a
/// key's modification revision is at least that of its last acknowledged
/// write, and equal only with that write's value.
pub fn durability(history: &History, contents: &Contents) -> Vec<String> {
    durable_up_to(history, contents, i64::MAX)
}

/// What a cluster restored from the snapshot at `snapshot_revision` must
/// serve: every acknowledged write up to that revision (unless a later one
/// up to it replaced it), and nothing written after it: exactly the writes
/// after the snapshot are missing.
pub fn restored(history: &History, contents: &Contents, snapshot_revision: i64) -> Vec<String> {
    let mut problems = durable_up_to(history, contents, snapshot_revision);
    for (key, (value, revision)) in contents {
        if *revision > snapshot_revision {
            problems.push(format!(
                "the restored {key} holds {value:?} from revision {revision}, after the snapshot at revision {snapshot_revision}"
            ));
        }
    }
    problems
}

/// Durability of the acknowledged writes at revisions up to `bound`.
fn durable_up_to(history: &History, contents: &Contents, bound: i64) -> Vec<String> {
    let mut problems = Vec::new();
    let lost_deletes: std::collections::BTreeSet<&str> = history
        .operations
        .iter()
        .filter(|op| op.completed.is_none() && matches!(op.request, Request::Delete { .. }))
        .map(|op| op.request.key())
        .collect();
    for (key, mut writes) in acked_writes(history) {
        writes.retain(|w| w.revision <= bound);
        let Some(last) = writes.last() else {
            continue;
        };
        match (contents.get(&key), &last.value) {
            (Some((value, revision)), _) if *revision > last.revision => {
                // Overwritten later by a write whose answer was lost.
                let _ = value;
            }
            (Some((value, revision)), Some(acked)) if *revision == last.revision => {
                if value != acked {
                    problems.push(format!(
                        "{key} holds {value:?} at revision {revision}, where the acknowledged write put {acked:?}"
                    ));
                }
            }
            (None, None) => {}
            // A delete whose answer was lost may take effect at any time
            // after it was sent, even long after later acknowledged writes.
            (None, Some(_)) if lost_deletes.contains(key.as_str()) => {}
            (None, Some(acked)) => problems.push(format!(
                "{key} is missing: the write of {acked:?} at revision {} was acknowledged",
                last.revision
            )),
            (Some((value, revision)), acked) => problems.push(format!(
                "{key} holds {value:?} from revision {revision}, older than the acknowledged {} at revision {}",
                acked.as_ref().map_or("delete".to_string(), |v| format!("write of {v:?}")),
                last.revision
            )),
        }
    }
    problems
}

/// Every member must serve the same contents once it has caught up.
pub fn agreement(members: &[(String, Contents)]) -> Vec<String> {
    let Some((first_name, first)) = members.first() else {
        return Vec::new();
    };
    members
        .iter()
        .skip(1)
        .filter(|(_, contents)| contents != first)
        .map(|(name, contents)| {
            let differing: Vec<&String> = first
                .keys()
                .chain(contents.keys())
                .filter(|k| first.get(*k) != contents.get(*k))
                .collect();
            format!("{name} and {first_name} disagree on {differing:?}")
        })
        .collect()
}

/// The watch guarantees: events in strictly rising revisions (no
/// duplicates, even across resumed streams), each revision's events in
/// one response, every event a write some client made, and no
/// acknowledged write missing up to the last revision the watcher saw.
pub fn watch(history: &History, log: &WatchLog) -> Vec<String> {
    let mut problems = Vec::new();
    for pair in log.events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.revision < a.revision || (b.revision == a.revision && b.key <= a.key) {
            problems.push(format!(
                "event {} {:?} came after {} {:?}: out of order or repeated",
                b.revision, b.key, a.revision, a.key
            ));
        }
        if b.revision == a.revision && b.response != a.response {
            problems.push(format!(
                "revision {} was split across responses",
                a.revision
            ));
        }
    }
    // Every event must be some client's write (answered or not).
    let mut written: BTreeMap<(&str, Option<&str>), Vec<Option<i64>>> = BTreeMap::new();
    for op in &history.operations {
        let answer = op.completed.as_ref().map(|(_, r)| r);
        let (key, value, revision) = match (&op.request, answer) {
            (Request::Put { key, value }, Some(Response::Put { revision })) => {
                (key, Some(value.as_str()), Some(*revision))
            }
            (Request::Put { key, value }, None) => (key, Some(value.as_str()), None),
            (
                Request::CompareAndSet { key, value, .. },
                Some(Response::CompareAndSet {
                    revision,
                    succeeded: true,
                }),
            ) => (key, Some(value.as_str()), Some(*revision)),
            (Request::CompareAndSet { key, value, .. }, None) => (key, Some(value.as_str()), None),
            (Request::Delete { key }, Some(Response::Delete { revision, deleted }))
                if *deleted > 0 =>
            {
                (key, None, Some(*revision))
            }
            (Request::Delete { key }, None) => (key, None, None),
            _ => continue,
        };
        written
            .entry((key.as_str(), value))
            .or_default()
            .push(revision);
    }
    for event in &log.events {
        let candidates = written.get(&(event.key.as_str(), event.value.as_deref()));
        let explained = candidates.is_some_and(|revisions| {
            revisions
                .iter()
                .any(|r| r.is_none_or(|r| r == event.revision))
        });
        if !explained {
            problems.push(format!(
                "event at revision {} on {:?} ({:?}) matches no write",
                event.revision, event.key, event.value
            ));
        }
    }
    let last_seen = log.events.last().map_or(0, |e| e.revision);
    let seen: std::collections::BTreeSet<i64> = log.events.iter().map(|e| e.revision).collect();
    for (key, writes) in acked_writes(history) {
        for write in writes.iter().filter(|w| w.revision <= last_seen) {
            if !seen.contains(&write.revision) {
                problems.push(format!(
                    "the watcher never saw the acknowledged write to {key} at revision {}",
                    write.revision
                ));
            }
        }
    }
    problems
}

/// One cluster: every answer any client got names the same cluster id.
pub fn identity(cluster_ids: &std::collections::BTreeSet<u64>) -> Vec<String> {
    if cluster_ids.len() > 1 {
        vec![format!(
            "clients were answered by {} clusters: {:x?}",
            cluster_ids.len(),
            cluster_ids
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Operation;

    fn put(history: &mut History, at_ms: u64, value: &str, revision: i64) {
        history.push(Operation {
            client: 0,
            invoked_ms: at_ms,
            request: Request::Put {
                key: "k0".into(),
                value: value.into(),
            },
            completed: Some((at_ms + 1, Response::Put { revision })),
        });
    }

    fn contents(value: &str, revision: i64) -> Contents {
        Contents::from([("k0".to_string(), (value.to_string(), revision))])
    }

    #[test]
    fn a_missing_acknowledged_write_is_reported() {
        let mut history = History::default();
        put(&mut history, 10, "a", 5);
        assert!(durability(&history, &contents("a", 5)).is_empty());
        let problems = durability(&history, &Contents::new());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("is missing"));
    }

    #[test]
    fn a_delete_with_a_lost_answer_may_land_after_later_writes() {
        let mut history = History::default();
        history.push(Operation {
            client: 1,
            invoked_ms: 1,
            request: Request::Delete { key: "k0".into() },
            completed: None,
        });
        put(&mut history, 10, "a", 5);
        assert!(durability(&history, &Contents::new()).is_empty());
    }

    #[test]
    fn a_restore_keeps_exactly_the_writes_up_to_its_snapshot() {
        let mut history = History::default();
        put(&mut history, 10, "a", 5);
        put(&mut history, 20, "b", 9);
        assert!(restored(&history, &contents("a", 5), 7).is_empty());
        assert!(
            !restored(&history, &contents("b", 9), 7).is_empty(),
            "a write after the snapshot came back"
        );
        assert!(
            !restored(&history, &Contents::new(), 7).is_empty(),
            "a write before the snapshot was lost"
        );
        assert!(restored(&history, &contents("b", 9), 9).is_empty());
    }
}
