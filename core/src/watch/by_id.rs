//! A stream's watchers by id, side by side in one allocation, in id order.
//!
//! Every new revision visits each stream's watchers, and most streams
//! hold one or a few: kept in a B-tree, the first visit of a step reads
//! the node's keys, values and length, several cache lines that a
//! thousand other streams pushed out since. Side by side, a watcher is
//! one or two lines. Ids the stream hands out rise, so a new watcher
//! usually goes at the end; one with an id of the client's choosing is
//! moved into place, which is bounded by the stream's watcher limit.

/// Values by `i64` id, in id order.
#[derive(Debug, Clone)]
pub struct ById<T> {
    entries: Vec<(i64, T)>,
}

impl<T> Default for ById<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> ById<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.position(id).is_ok()
    }

    /// Adds `value` under `id`, which the caller has checked is free.
    pub fn insert(&mut self, id: i64, value: T) {
        match self.position(id) {
            Ok(_) => panic!("watch id {id} is already taken"),
            Err(at) => self.entries.insert(at, (id, value)),
        }
    }

    pub fn remove(&mut self, id: i64) -> Option<T> {
        let at = self.position(id).ok()?;
        Some(self.entries.remove(at).1)
    }

    /// Removes the values `gone` says to, and returns their ids in order.
    pub fn remove_where(&mut self, mut gone: impl FnMut(&T) -> bool) -> Vec<i64> {
        let mut removed = Vec::new();
        self.entries.retain(|(id, value)| {
            let remove = gone(value);
            if remove {
                removed.push(*id);
            }
            !remove
        });
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &T)> {
        self.entries.iter().map(|(id, value)| (*id, value))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (i64, &mut T)> {
        self.entries.iter_mut().map(|(id, value)| (*id, value))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }

    /// Where `id` is, or where it would go; a rising id without a search.
    fn position(&self, id: i64) -> Result<usize, usize> {
        match self.entries.last() {
            None => Err(0),
            Some(&(last, _)) if last < id => Err(self.entries.len()),
            Some(_) => self.entries.binary_search_by_key(&id, |(id, _)| *id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64),
        Remove(i64),
        RemoveOdd,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-3i64..40).prop_map(Op::Insert),
            2 => (-3i64..40).prop_map(Op::Remove),
            1 => Just(Op::RemoveOdd),
        ]
    }

    proptest! {
        /// Whatever is inserted and removed, in whatever order, the ids
        /// and values are a map's, in its order.
        #[test]
        fn holds_what_a_map_holds_in_its_order(ops in proptest::collection::vec(op(), 0..80)) {
            let mut by_id = ById::default();
            let mut model = BTreeMap::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(id) if !model.contains_key(&id) => {
                        prop_assert!(!by_id.contains(id));
                        by_id.insert(id, n);
                        model.insert(id, n);
                    }
                    Op::Insert(id) => prop_assert!(by_id.contains(id)),
                    Op::Remove(id) => prop_assert_eq!(by_id.remove(id), model.remove(&id)),
                    Op::RemoveOdd => {
                        let odd: Vec<i64> =
                            model.iter().filter(|(_, n)| *n % 2 == 1).map(|(id, _)| *id).collect();
                        model.retain(|_, n| *n % 2 == 0);
                        prop_assert_eq!(by_id.remove_where(|n| n % 2 == 1), odd);
                    }
                }
                let held: Vec<(i64, usize)> = by_id.iter().map(|(id, n)| (id, *n)).collect();
                let wanted: Vec<(i64, usize)> = model.iter().map(|(id, n)| (*id, *n)).collect();
                prop_assert_eq!(held, wanted);
                prop_assert_eq!(by_id.len(), model.len());
            }
        }
    }

    #[test]
    #[should_panic(expected = "watch id 3 is already taken")]
    fn an_id_is_taken_once() {
        let mut by_id = ById::default();
        by_id.insert(3, ());
        by_id.insert(3, ());
    }
}
