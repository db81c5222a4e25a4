//! The sequential model of etcd's key-value store the checker replays
//! operations against: values, the revision that last modified each key,
//! and the store revision, which every change raises by one.

use std::collections::BTreeMap;

use crate::history::{Request, Response};

/// The store after some sequence of operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KvState {
    pub revision: i64,
    /// Key → (value, modification revision); revision 0 when the write's
    /// answer was lost under [`KvState::background_writes`], so it is not
    /// known.
    pub keys: BTreeMap<String, (String, i64)>,
    /// Whether writes nobody in the history made may raise the revision
    /// between operations (e2d's own keys, such as its join lock): then an
    /// answer's revision may be above the model's, never below, and each
    /// change still takes a revision of its own.
    pub background_writes: bool,
}

impl KvState {
    /// An empty store whose revision may also rise from writes outside
    /// the history.
    pub fn with_background_writes() -> Self {
        Self {
            background_writes: true,
            ..Self::default()
        }
    }

    /// Applies `request` and checks it against `observed` (what the server
    /// answered; `None` when the answer was lost). Returns the next state,
    /// or `None` if the answer cannot follow from this state.
    pub fn step(&self, request: &Request, observed: Option<&Response>) -> Option<KvState> {
        let mut next = self.clone();
        // The revision a change takes, and the one a non-change reports.
        let observed_revision = observed.map(Response::revision);
        let change_revision = match observed_revision {
            Some(r) if self.background_writes && r > self.revision => r,
            _ => self.revision + 1,
        };
        let unchanged_revision = match observed_revision {
            Some(r) if self.background_writes && r >= self.revision => r,
            _ => self.revision,
        };
        // A lost answer leaves the exact revision of a change unknown.
        let mod_revision = if observed.is_none() && self.background_writes {
            0
        } else {
            change_revision
        };
        let answer = match request {
            Request::Put { key, value } => {
                next.revision = change_revision;
                next.keys.insert(key.clone(), (value.clone(), mod_revision));
                Response::Put {
                    revision: next.revision,
                }
            }
            Request::Get { key } => {
                next.revision = unchanged_revision;
                let mut found = self.keys.get(key).cloned();
                if let (
                    Some((_, 0)),
                    Some(Response::Get {
                        found: Some((_, seen)),
                        ..
                    }),
                ) = (&mut found, observed)
                {
                    // Learned now: the lost write's revision.
                    let learned = (*seen > 0 && *seen <= unchanged_revision).then_some(*seen)?;
                    if let Some(stored) = next.keys.get_mut(key) {
                        stored.1 = learned;
                    }
                    found = next.keys.get(key).cloned();
                }
                Response::Get {
                    revision: next.revision,
                    found,
                }
            }
            Request::Delete { key } => {
                let deleted = u64::from(next.keys.remove(key).is_some());
                next.revision = if deleted > 0 {
                    change_revision
                } else {
                    unchanged_revision
                };
                Response::Delete {
                    revision: next.revision,
                    deleted,
                }
            }
            Request::CompareAndSet {
                key,
                expected,
                value,
            } => {
                let current = self.keys.get(key).map(|(v, _)| v);
                let succeeded = current == expected.as_ref();
                if succeeded {
                    next.revision = change_revision;
                    next.keys.insert(key.clone(), (value.clone(), mod_revision));
                } else {
                    next.revision = unchanged_revision;
                }
                Response::CompareAndSet {
                    revision: next.revision,
                    succeeded,
                }
            }
        };
        match observed {
            Some(observed) if *observed != answer => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Request {
        Request::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn revisions_rise_by_one_per_change_and_reads_see_them() {
        let s0 = KvState::default();
        let s1 = s0
            .step(&put("a", "1"), Some(&Response::Put { revision: 1 }))
            .unwrap();
        assert!(s0
            .step(&put("a", "1"), Some(&Response::Put { revision: 2 }))
            .is_none());
        let get = Request::Get { key: "a".into() };
        let seen = Response::Get {
            revision: 1,
            found: Some(("1".into(), 1)),
        };
        assert_eq!(s1.step(&get, Some(&seen)), Some(s1.clone()));
        let stale = Response::Get {
            revision: 1,
            found: None,
        };
        assert!(s1.step(&get, Some(&stale)).is_none());
        // Deleting a missing key changes nothing, revision included.
        let delete = Request::Delete { key: "b".into() };
        let none = Response::Delete {
            revision: 1,
            deleted: 0,
        };
        assert_eq!(s1.step(&delete, Some(&none)), Some(s1.clone()));
        let cas = Request::CompareAndSet {
            key: "a".into(),
            expected: Some("1".into()),
            value: "2".into(),
        };
        let done = Response::CompareAndSet {
            revision: 2,
            succeeded: true,
        };
        let s2 = s1.step(&cas, Some(&done)).unwrap();
        assert_eq!(s2.keys["a"], ("2".to_string(), 2));
        assert!(s2.step(&cas, Some(&done)).is_none());
        // A lost answer: the change may have happened.
        assert_eq!(s1.step(&cas, None), Some(s2));
    }

    #[test]
    fn background_writes_may_raise_the_revision_but_never_lower_it() {
        let s0 = KvState::with_background_writes();
        // Someone else's write took revision 1.
        let s2 = s0
            .step(&put("a", "1"), Some(&Response::Put { revision: 2 }))
            .unwrap();
        assert_eq!(s2.keys["a"], ("1".to_string(), 2));
        let get = Request::Get { key: "a".into() };
        let older = Response::Get {
            revision: 1,
            found: Some(("1".into(), 2)),
        };
        assert!(s2.step(&get, Some(&older)).is_none());
        let later = Response::Get {
            revision: 5,
            found: Some(("1".into(), 2)),
        };
        assert_eq!(s2.step(&get, Some(&later)).unwrap().revision, 5);
        // A change never shares a revision.
        assert!(s2
            .step(&put("b", "1"), Some(&Response::Put { revision: 2 }))
            .is_none());
        // A lost answer: the revision is learned from a later read.
        let lost = s2.step(&put("a", "2"), None).unwrap();
        assert_eq!(lost.keys["a"], ("2".to_string(), 0));
        let read = Response::Get {
            revision: 9,
            found: Some(("2".into(), 7)),
        };
        assert_eq!(lost.step(&get, Some(&read)).unwrap().keys["a"].1, 7);
        let too_new = Response::Get {
            revision: 6,
            found: Some(("2".into(), 7)),
        };
        assert!(lost.step(&get, Some(&too_new)).is_none());
    }
}
