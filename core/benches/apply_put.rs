//! What applying a put costs the state machine itself: the key index, the
//! encoding, the events, with a backend that keeps nothing, so the number
//! is the apply path's and not a table's. Keys are drawn from 100,000, as
//! `e2d-bench put --key-space-size 100000` draws them, so most puts
//! overwrite a key the index holds.
//!
//! `cargo bench -p e2d-core --bench apply_put` prints the median of five
//! rounds of 200,000 puts, in nanoseconds per put, for keys of 8 bytes
//! (held in the index's nodes) and of 48 (held apart).

use std::time::Instant;

use e2d_core::storage::{Backend, Bytes, StorageError, Table};
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::PutRequest;

const KEY_SPACE: u64 = 100_000;
const PUTS_PER_ROUND: usize = 200_000;
const ROUNDS: usize = 5;
const VALUE_BYTES: usize = 256;

/// Takes every write and forgets it; reads find nothing.
struct Discard;

impl Backend for Discard {
    fn get(&self, _: Table, _: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(None)
    }

    fn scan(
        &self,
        _: Table,
        _: &[u8],
        _: &[u8],
        _: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        Ok(())
    }

    fn put(&mut self, _: Table, _: &[u8], _: &[u8]) {}

    fn delete(&mut self, _: Table, _: &[u8]) {}

    fn commit(&mut self, _: bool) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }
}

/// xorshift64: the same keys on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn median_ns_per_put(key_bytes: usize) -> f64 {
    let mut machine = StateMachine::open(Discard, 0).expect("an empty store opens");
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let requests: Vec<PutRequest> = (0..PUTS_PER_ROUND)
                .map(|_| PutRequest {
                    key: format!("{:0key_bytes$}", next(&mut seed) % KEY_SPACE).into_bytes(),
                    value: vec![b'v'; VALUE_BYTES],
                    ..Default::default()
                })
                .collect();
            let started = Instant::now();
            for request in &requests {
                machine.put(request).expect("a put applies");
            }
            started.elapsed().as_nanos() as f64 / PUTS_PER_ROUND as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    for key_bytes in [8, 48] {
        println!(
            "apply of a put, {key_bytes}-byte keys of {KEY_SPACE}: {:.0} ns (median of {ROUNDS} rounds of {PUTS_PER_ROUND})",
            median_ns_per_put(key_bytes)
        );
    }
}
