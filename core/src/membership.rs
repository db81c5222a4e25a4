//! Membership changes (etcd's MemberAdd, MemberRemove, MemberPromote):
//! which may go ahead, with etcd's rules and errors.
//!
//! The rules fall in two parts, as in etcd:
//!
//! - [`check_replicated`] judges a change by the replicated member list
//!   alone: the member exists (or not), is a learner (or not), at most
//!   [`LEARNERS_MAX`] learners, no peer URL twice, at least one voter left.
//!   Every member reaches the same answer from the same list, so the raft
//!   driver checks again when the change is applied (as etcd's
//!   `applyConfChange` does) and applies a refused change as a no-op: two
//!   changes proposed back to back may each pass the leader's check while
//!   the other is still in flight.
//! - [`check_on_leader`] adds what only the leader can judge, from how far
//!   each member has come in its log: a change must leave a quorum of
//!   started voters, and a learner is promoted only once it has caught up.
//!   These answers depend on timing, so they are never checked at apply.

use std::collections::BTreeMap;

use e2d_proto::peer::member_change::Kind;
use e2d_proto::peer::{MemberAttributes, MemberChange};

use crate::error::Error;
use crate::manager::quorum::quorum;

/// Most learners a cluster may have at once (etcd's default).
pub const LEARNERS_MAX: usize = 1;
/// A learner may be promoted once it has matched this share of the
/// leader's log (etcd's 90 %).
pub const LEARNER_READY_PERCENT: u64 = 90;

/// A proposed membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new member, voter or learner, with its id and peer URLs.
    Add(MemberAttributes),
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
}

impl Change {
    /// The change a replicated `MemberChange` describes; `None` if it
    /// names no member.
    pub fn of(change: &MemberChange) -> Option<Self> {
        let member = change.member.as_ref()?;
        let id = member.member_id;
        Some(match change.kind() {
            Kind::Add => Self::Add(member.clone()),
            Kind::Remove => Self::Remove { id },
            Kind::Promote => Self::Promote { id },
        })
    }

    /// The member the change is about.
    pub fn member_id(&self) -> u64 {
        match self {
            Self::Add(member) => member.member_id,
            Self::Remove { id } | Self::Promote { id } => *id,
        }
    }
}

/// How far one member has come, as the leader sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The highest log index known to be in the member's log.
    pub matched_index: u64,
    /// The leader heard from it recently (always true for the leader).
    pub recently_active: bool,
}

/// The leader's progress of every member, and its own last log index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderProgress {
    pub last_index: u64,
    pub members: BTreeMap<u64, Progress>,
}

impl LeaderProgress {
    /// Whether the leader heard from member `id` recently.
    pub fn is_started(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(|p| p.recently_active)
    }

    /// Whether learner `id` has enough of the leader's log to be promoted.
    pub fn learner_ready(&self, id: u64) -> bool {
        let matched = self.members.get(&id).map_or(0, |p| p.matched_index);
        u128::from(matched) * 100 >= u128::from(self.last_index) * u128::from(LEARNER_READY_PERCENT)
    }
}

/// Peer or client URLs a member may announce: at least one, each
/// `http://` or `https://` with something after the scheme.
pub fn check_urls(urls: &[String]) -> Result<(), Error> {
    let valid = !urls.is_empty()
        && urls.iter().all(|url| {
            url.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty()
            })
        });
    if valid {
        Ok(())
    } else {
        Err(Error::BadMemberUrls)
    }
}

/// Whether member `id` may take `peer_urls` (etcd's MemberUpdate): valid,
/// and none of them another member's.
pub fn check_update(
    members: &[MemberAttributes],
    id: u64,
    peer_urls: &[String],
) -> Result<(), Error> {
    check_urls(peer_urls)?;
    if !members.iter().any(|m| m.member_id == id) {
        return Err(Error::MemberNotFound);
    }
    if members
        .iter()
        .any(|m| m.member_id != id && shares_url(m, peer_urls))
    {
        return Err(Error::PeerUrlExists);
    }
    Ok(())
}

/// The rules that depend on the replicated member list only; see the
/// module docs.
pub fn check_replicated(members: &[MemberAttributes], change: &Change) -> Result<(), Error> {
    match change {
        Change::Add(added) => check_add(members, added),
        Change::Remove { id } => {
            let member = find(members, *id)?;
            let voters_after = voters(members).filter(|m| m.member_id != *id).count();
            if !member.is_learner && voters_after == 0 {
                return Err(Error::NotEnoughStartedMembers);
            }
            Ok(())
        }
        Change::Promote { id } => {
            if find(members, *id)?.is_learner {
                Ok(())
            } else {
                Err(Error::MemberNotLearner)
            }
        }
    }
}

/// The replicated rules, then the started-quorum and catch-up rules the
/// leader judges from `progress` (its own); see the module docs.
pub fn check_on_leader(
    members: &[MemberAttributes],
    progress: &LeaderProgress,
    change: &Change,
) -> Result<(), Error> {
    check_replicated(members, change)?;
    let voters_now = voters(members).count();
    let started_now = voters(members)
        .filter(|m| progress.is_started(m.member_id))
        .count();
    let enough = match change {
        Change::Add(added) if added.is_learner => true,
        // The new voter has not started: the others must make its quorum,
        // except that a lone voter may always take a second (etcd's rule,
        // or no cluster of one could grow).
        Change::Add(_) => {
            (voters_now == 1 && started_now == 1) || started_now >= quorum(voters_now + 1)
        }
        Change::Remove { id } => {
            let after = voters(members).filter(|m| m.member_id != *id);
            let (voters_after, started_after) = after.fold((0, 0), |(all, started), m| {
                (
                    all + 1,
                    started + usize::from(progress.is_started(m.member_id)),
                )
            });
            voters_after == voters_now || started_after >= quorum(voters_after)
        }
        Change::Promote { id } => {
            if !progress.learner_ready(*id) {
                return Err(Error::LearnerNotReady);
            }
            // A learner in sync counts as started.
            started_now + 1 >= quorum(voters_now + 1)
        }
    };
    if enough {
        Ok(())
    } else {
        Err(Error::NotEnoughStartedMembers)
    }
}

fn check_add(members: &[MemberAttributes], added: &MemberAttributes) -> Result<(), Error> {
    check_urls(&added.peer_urls)?;
    if members.iter().any(|m| shares_url(m, &added.peer_urls)) {
        return Err(Error::PeerUrlExists);
    }
    if members.iter().any(|m| m.member_id == added.member_id) {
        return Err(Error::MemberExists);
    }
    let learners = members.iter().filter(|m| m.is_learner).count();
    if added.is_learner && learners >= LEARNERS_MAX {
        return Err(Error::TooManyLearners);
    }
    Ok(())
}

fn find(members: &[MemberAttributes], id: u64) -> Result<&MemberAttributes, Error> {
    members
        .iter()
        .find(|m| m.member_id == id)
        .ok_or(Error::MemberNotFound)
}

fn voters(members: &[MemberAttributes]) -> impl Iterator<Item = &MemberAttributes> {
    members.iter().filter(|m| !m.is_learner)
}

fn shares_url(member: &MemberAttributes, urls: &[String]) -> bool {
    member.peer_urls.iter().any(|url| urls.contains(url))
}

#[cfg(test)]
mod tests;
