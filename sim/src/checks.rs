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
    let mut problems = Vec::new();
    for (key, writes) in acked_writes(history) {
        let last = writes.last().expect("listed keys have writes");
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
