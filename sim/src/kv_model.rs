//! The sequential model of etcd's key-value store the checker replays
//! operations against: values, the revision that last modified each key,
//! and the store revision, which every change raises by one.

use std::collections::BTreeMap;

use crate::history::{Request, Response};

/// The store after some sequence of operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KvState {
    pub revision: i64,
    /// Key → (value, modification revision).
    pub keys: BTreeMap<String, (String, i64)>,
}

impl KvState {
    /// Applies `request` and checks it against `observed` (what the server
    /// answered; `None` when the answer was lost). Returns the next state,
    /// or `None` if the answer cannot follow from this state.
    pub fn step(&self, request: &Request, observed: Option<&Response>) -> Option<KvState> {
        let mut next = self.clone();
        let answer = match request {
            Request::Put { key, value } => {
                next.revision += 1;
                next.keys
                    .insert(key.clone(), (value.clone(), next.revision));
                Response::Put {
                    revision: next.revision,
                }
            }
            Request::Get { key } => Response::Get {
                revision: self.revision,
                found: self.keys.get(key).cloned(),
            },
            Request::Delete { key } => {
                let deleted = u64::from(next.keys.remove(key).is_some());
                if deleted > 0 {
                    next.revision += 1;
                }
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
                    next.revision += 1;
                    next.keys
                        .insert(key.clone(), (value.clone(), next.revision));
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
}
