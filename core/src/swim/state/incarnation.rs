//! The incarnation rules: how one statement about a member changes the view,
//! and how the local node refutes what others say of it.

use super::{Event, Heard, Member, Swim};
use crate::swim::meta::{Liveness, MemberView};
use crate::swim::timer::Timer;

impl Swim {
    /// Applies one statement. From a push-pull, `Dead` only raises
    /// suspicion, so a live node gets the chance to refute it.
    pub(super) fn apply_update(&mut self, update: MemberView, from_push_pull: bool) -> Heard {
        match update.liveness {
            Liveness::Alive => self.on_alive(update),
            Liveness::Suspect => self.on_suspect(&update.name, update.incarnation),
            Liveness::Dead if from_push_pull => self.on_suspect(&update.name, update.incarnation),
            Liveness::Dead | Liveness::Left => {
                self.on_dead(&update.name, update.incarnation, update.liveness)
            }
        }
    }

    /// `Alive(inc)` replaces what we know when `inc` is strictly greater, or
    /// when it moves a dead or left member to a new address (a restart).
    pub(super) fn on_alive(&mut self, alive: MemberView) -> Heard {
        if alive.name == self.name {
            return self.on_alive_about_self(&alive);
        }
        let Some(member) = self.members.get(&alive.name) else {
            self.add_member(alive);
            return Heard::Nothing;
        };
        let moves = alive.addr != member.view.addr;
        if moves && member.view.liveness.is_up() {
            return Heard::Nothing;
        }
        if alive.incarnation <= member.view.incarnation && !moves {
            return Heard::Nothing;
        }
        let was_up = member.view.liveness.is_up();
        let name = alive.name.clone();
        let now_ms = self.now_ms;
        let member = self.members.get_mut(&name).expect("checked above");
        if member.view.liveness != Liveness::Alive {
            member.state_change_ms = now_ms;
        }
        member.view = MemberView {
            liveness: Liveness::Alive,
            ..alive
        };
        self.timers.cancel(&Timer::Suspicion(name.clone()));
        if !was_up {
            self.probe_order.insert(&name, &mut self.rng);
        }
        self.changed(&name);
        Heard::Nothing
    }

    /// Someone else's idea of us that differs from ours at the same or a
    /// higher incarnation (a previous life of this node) is overridden.
    pub(super) fn on_alive_about_self(&mut self, alive: &MemberView) -> Heard {
        let local = self.local();
        if self.has_left() || alive.incarnation < local.incarnation {
            return Heard::Nothing;
        }
        if alive.incarnation == local.incarnation
            && alive.addr == local.addr
            && alive.meta == local.meta
        {
            return Heard::Nothing;
        }
        self.refute(alive.incarnation);
        Heard::Refuted
    }

    /// `Suspect(inc)` replaces `Alive(inc' <= inc)` and starts the
    /// suspicion timer.
    pub(super) fn on_suspect(&mut self, name: &str, incarnation: u64) -> Heard {
        if name == self.name {
            return self.on_accused(incarnation);
        }
        let Some(member) = self.members.get_mut(name) else {
            return Heard::Nothing;
        };
        if incarnation < member.view.incarnation || member.view.liveness != Liveness::Alive {
            return Heard::Nothing;
        }
        member.view.incarnation = incarnation;
        member.view.liveness = Liveness::Suspect;
        member.state_change_ms = self.now_ms;
        let timeout_ms = self.config.suspicion_timeout_ms(self.up_count());
        self.timers
            .set(Timer::Suspicion(name.to_string()), self.now_ms + timeout_ms);
        self.changed(name);
        self.tell_accused(name);
        Heard::Nothing
    }

    /// `Dead(inc)` or `Left(inc)` replaces any state at `inc' <= inc` that is
    /// not already dead or left.
    pub(super) fn on_dead(&mut self, name: &str, incarnation: u64, liveness: Liveness) -> Heard {
        debug_assert!(matches!(liveness, Liveness::Dead | Liveness::Left));
        if name == self.name {
            return self.on_accused(incarnation);
        }
        let Some(member) = self.members.get_mut(name) else {
            return Heard::Nothing;
        };
        if incarnation < member.view.incarnation || !member.view.liveness.is_up() {
            return Heard::Nothing;
        }
        member.view.incarnation = incarnation;
        member.view.liveness = liveness;
        member.state_change_ms = self.now_ms;
        self.timers.cancel(&Timer::Suspicion(name.to_string()));
        self.changed(name);
        if liveness == Liveness::Dead {
            self.tell_accused(name);
        }
        Heard::Nothing
    }

    /// We were said to be suspect, dead or gone at `incarnation`.
    pub(super) fn on_accused(&mut self, incarnation: u64) -> Heard {
        if self.has_left() {
            return Heard::Nothing;
        }
        if incarnation < self.local().incarnation {
            return Heard::StaleAccusation;
        }
        self.refute(incarnation);
        Heard::Refuted
    }

    pub(super) fn refute(&mut self, incarnation: u64) {
        debug_assert!(!self.has_left());
        let member = self.members.get_mut(&self.name).expect("local member");
        member.view.incarnation = member.view.incarnation.max(incarnation).saturating_add(1);
        self.changed(&self.name.clone());
    }

    pub(super) fn add_member(&mut self, alive: MemberView) {
        if self.members.len() >= self.config.members_max && !self.forget_oldest_gone() {
            return;
        }
        let name = alive.name.clone();
        self.members.insert(
            name.clone(),
            Member {
                view: MemberView {
                    liveness: Liveness::Alive,
                    ..alive
                },
                state_change_ms: self.now_ms,
            },
        );
        self.probe_order.insert(&name, &mut self.rng);
        self.changed(&name);
    }

    /// Makes room by forgetting the dead or left member that has been so the
    /// longest. Returns false when every member is up.
    pub(super) fn forget_oldest_gone(&mut self) -> bool {
        let oldest = self
            .members
            .values()
            .filter(|member| !member.view.liveness.is_up())
            .min_by_key(|member| (member.state_change_ms, member.view.name.clone()))
            .map(|member| member.view.name.clone());
        let Some(name) = oldest else {
            return false;
        };
        self.members.remove(&name);
        self.broadcasts.remove(&name);
        true
    }

    /// Queues the member's new state for dissemination and reports it.
    pub(super) fn changed(&mut self, name: &str) {
        let view = self.members[name].view.clone();
        self.broadcasts.enqueue(&view);
        self.push_event(Event::MemberChanged(view));
    }
}
