//! Leases: time-limited grants that delete their keys when they expire.
//!
//! Time is an argument (`now_ms`, milliseconds on the shell's monotonic
//! clock). What survives a restart is each lease's TTL and its remaining
//! time at the last checkpoint, so a lease never expires earlier than its
//! holder was promised, counting only time the server was up.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::limits::{LEASE_TTL_MAX_SECONDS, LEASE_TTL_MIN_SECONDS};

pub type LeaseId = i64;

/// "No lease", as etcd spells it on the wire.
pub const NO_LEASE: LeaseId = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl_seconds: i64,
    pub expiry_ms: u64,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expiry_ms.saturating_sub(now_ms)
    }
}

/// The persisted part of a lease: 16 bytes, TTL then remaining ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ttl_seconds: i64,
    pub remaining_ms: u64,
}

impl LeaseRecord {
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.ttl_seconds.to_be_bytes());
        out[8..].copy_from_slice(&self.remaining_ms.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            ttl_seconds: i64::from_be_bytes(bytes[..8].try_into().ok()?),
            remaining_ms: u64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct Lessor {
    leases: BTreeMap<LeaseId, Lease>,
}

/// The TTL a grant gets: etcd raises short TTLs to the minimum.
pub fn effective_ttl_seconds(requested: i64) -> Result<i64, Error> {
    if requested > LEASE_TTL_MAX_SECONDS {
        return Err(Error::LeaseTtlTooLarge);
    }
    Ok(requested.max(LEASE_TTL_MIN_SECONDS))
}

fn ttl_ms(ttl_seconds: i64) -> u64 {
    u64::try_from(ttl_seconds).unwrap_or(0).saturating_mul(1000)
}

impl Lessor {
    pub fn grant(&mut self, id: LeaseId, ttl_seconds: i64, now_ms: u64) -> Result<&Lease, Error> {
        assert!(id != NO_LEASE, "lease ids are chosen before the grant");
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl_seconds = effective_ttl_seconds(ttl_seconds)?;
        let lease = Lease {
            id,
            ttl_seconds,
            expiry_ms: now_ms.saturating_add(ttl_ms(ttl_seconds)),
            keys: BTreeSet::new(),
        };
        Ok(self.leases.entry(id).or_insert(lease))
    }

    /// Puts back a lease read from storage.
    pub fn restore(&mut self, id: LeaseId, record: LeaseRecord, now_ms: u64) {
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_seconds: record.ttl_seconds,
                expiry_ms: now_ms.saturating_add(record.remaining_ms),
                keys: BTreeSet::new(),
            },
        );
    }

    pub fn remove(&mut self, id: LeaseId) -> Option<Lease> {
        self.leases.remove(&id)
    }

    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Renews a lease for its full TTL; returns the TTL.
    pub fn renew(&mut self, id: LeaseId, now_ms: u64) -> Result<i64, Error> {
        let lease = self.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if lease.expiry_ms <= now_ms {
            return Err(Error::LeaseNotFound);
        }
        lease.expiry_ms = now_ms.saturating_add(ttl_ms(lease.ttl_seconds));
        Ok(lease.ttl_seconds)
    }

    /// Sets how long a lease has left, as a checkpoint says.
    pub fn set_remaining(&mut self, id: LeaseId, remaining_ms: u64, now_ms: u64) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.expiry_ms = now_ms.saturating_add(remaining_ms);
        }
    }

    /// Gives every lease its full TTL from `now_ms`, as a new leader does.
    pub fn refresh_all(&mut self, now_ms: u64) {
        for lease in self.leases.values_mut() {
            lease.expiry_ms = now_ms.saturating_add(ttl_ms(lease.ttl_seconds));
        }
    }

    pub fn attach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }

    /// Up to `max` leases whose time ran out, soonest first.
    pub fn expired(&self, now_ms: u64, max: usize) -> Vec<LeaseId> {
        let mut due: Vec<&Lease> = self
            .leases
            .values()
            .filter(|l| l.expiry_ms <= now_ms)
            .collect();
        due.sort_by_key(|l| (l.expiry_ms, l.id));
        due.into_iter().take(max).map(|l| l.id).collect()
    }

    /// The next moment a lease expires, for the shell's timer.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.leases.values().map(|l| l.expiry_ms).min()
    }

    pub fn ids(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.leases.keys().copied()
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> + '_ {
        self.leases.values()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ttls_are_raised_and_huge_refused() {
        let mut lessor = Lessor::default();
        assert_eq!(lessor.grant(1, 1, 0).unwrap().ttl_seconds, 2);
        assert_eq!(lessor.grant(1, 5, 0), Err(Error::LeaseExists));
        assert_eq!(
            lessor.grant(2, LEASE_TTL_MAX_SECONDS + 1, 0),
            Err(Error::LeaseTtlTooLarge)
        );
    }

    #[test]
    fn expiry_and_renewal() {
        let mut lessor = Lessor::default();
        lessor.grant(7, 10, 1_000).unwrap();
        assert!(lessor.expired(10_999, 10).is_empty());
        assert_eq!(lessor.renew(7, 10_000), Ok(10));
        assert!(lessor.expired(19_999, 10).is_empty());
        assert_eq!(lessor.expired(20_000, 10), vec![7]);
        assert_eq!(lessor.renew(7, 20_000), Err(Error::LeaseNotFound));
    }

    #[test]
    fn record_round_trips() {
        let record = LeaseRecord {
            ttl_seconds: 30,
            remaining_ms: 12_345,
        };
        assert_eq!(LeaseRecord::decode(&record.encode()), Some(record));
        assert_eq!(LeaseRecord::decode(&[1, 2, 3]), None);
    }
}
