//! The values workloads write: slices of one pool of random bytes, each
//! at an offset its request picks. They neither repeat nor compress, as
//! etcd's benchmark tool writes random bytes: a server that compresses
//! what it stores gains here only what random data gives it.

use crate::workloads::XorShift;

/// The pool's size; values are at most this long.
const POOL_BYTES: usize = 4 << 20;

pub struct ValuePool(Vec<u8>);

impl ValuePool {
    pub fn new() -> ValuePool {
        let mut rng = XorShift(0x6a09_e667_f3bc_c908);
        let mut pool = Vec::with_capacity(POOL_BYTES);
        while pool.len() < POOL_BYTES {
            pool.extend_from_slice(&rng.next().to_le_bytes());
        }
        ValuePool(pool)
    }

    /// `size` bytes (at most the pool's) from an offset `seed` picks.
    pub fn value(&self, size: usize, seed: u64) -> Vec<u8> {
        let size = size.min(POOL_BYTES);
        let mut rng = XorShift(seed | 1);
        let offset = (rng.next() as usize) % (POOL_BYTES - size + 1);
        self.0[offset..offset + size].to_vec()
    }
}
