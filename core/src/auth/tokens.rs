//! Simple tokens (etcd's `--auth-token simple`): random strings a member
//! hands out after checking a password, each naming its user. Every
//! member learns a token when its `AssignToken` entry applies, so a client
//! may use it with any member. Not persisted: a restart forgets them, as
//! etcd does. Each lives its TTL past its last use, on this member's clock;
//! a user's tokens go when it is deleted or its password changes, and all
//! of them when auth is disabled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// etcd's default simple token TTL.
pub const TOKEN_TTL_MS_DEFAULT: u64 = 300_000;
/// Tokens one member keeps at most; when full, expired tokens go, then the
/// one closest to expiry.
pub const TOKENS_MAX: usize = 100_000;

#[derive(Debug)]
struct Token {
    user: String,
    /// Renewed on use, through a shared reference: lookups run under the
    /// state's read lock.
    expires_at_ms: AtomicU64,
}

impl Clone for Token {
    fn clone(&self) -> Self {
        Token {
            user: self.user.clone(),
            expires_at_ms: AtomicU64::new(self.expires_at_ms.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimpleTokens {
    ttl_ms: u64,
    tokens: BTreeMap<String, Token>,
}

impl Default for SimpleTokens {
    fn default() -> Self {
        Self::new(TOKEN_TTL_MS_DEFAULT)
    }
}

impl SimpleTokens {
    pub fn new(ttl_ms: u64) -> Self {
        assert!(ttl_ms > 0, "a token TTL of zero would expire every token");
        Self {
            ttl_ms,
            tokens: BTreeMap::new(),
        }
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Hands `token` to `user`. A token already handed out stays its
    /// first user's (tokens are random; a repeat is not honoured twice).
    pub fn assign(&mut self, token: &str, user: &str, now_ms: u64) {
        if self.tokens.contains_key(token) {
            return;
        }
        if self.tokens.len() >= TOKENS_MAX {
            self.make_room(now_ms);
        }
        self.tokens.insert(
            token.to_owned(),
            Token {
                user: user.to_owned(),
                expires_at_ms: AtomicU64::new(now_ms.saturating_add(self.ttl_ms)),
            },
        );
        debug_assert!(self.tokens.len() <= TOKENS_MAX);
    }

    /// The user of a live token, whose life starts over (etcd renews a
    /// token on every use).
    pub fn user_of(&self, token: &str, now_ms: u64) -> Option<&str> {
        let entry = self.tokens.get(token)?;
        let expires_at_ms = entry.expires_at_ms.load(Ordering::Relaxed);
        if expires_at_ms <= now_ms {
            return None;
        }
        entry
            .expires_at_ms
            .fetch_max(now_ms.saturating_add(self.ttl_ms), Ordering::Relaxed);
        Some(&entry.user)
    }

    /// Forgets every token of `user`.
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, t| t.user != user);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    fn make_room(&mut self, now_ms: u64) {
        self.tokens
            .retain(|_, t| t.expires_at_ms.load(Ordering::Relaxed) > now_ms);
        if self.tokens.len() < TOKENS_MAX {
            return;
        }
        let soonest = self
            .tokens
            .iter()
            .min_by_key(|(name, t)| (t.expires_at_ms.load(Ordering::Relaxed), name.as_str()))
            .map(|(name, _)| name.clone());
        if let Some(name) = soonest {
            self.tokens.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_its_ttl_past_its_last_use() {
        let mut tokens = SimpleTokens::new(1_000);
        tokens.assign("t.1", "alice", 0);
        assert_eq!(tokens.user_of("t.1", 999), Some("alice"));
        assert_eq!(tokens.user_of("t.1", 1_998), Some("alice"));
        assert_eq!(tokens.user_of("t.1", 2_999), None);
        assert_eq!(tokens.user_of("other", 0), None);
    }

    #[test]
    fn a_users_tokens_go_with_it() {
        let mut tokens = SimpleTokens::new(1_000);
        tokens.assign("a.1", "alice", 0);
        tokens.assign("b.1", "bob", 0);
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user_of("a.1", 1), None);
        assert_eq!(tokens.user_of("b.1", 1), Some("bob"));
    }

    #[test]
    fn a_full_table_drops_expired_tokens_then_the_oldest() {
        let mut tokens = SimpleTokens::new(10);
        for i in 0..TOKENS_MAX {
            tokens.assign(&format!("t.{i}"), "u", i as u64);
        }
        tokens.assign("new", "u", TOKENS_MAX as u64);
        assert_eq!(tokens.len(), 10);
        assert_eq!(tokens.user_of("new", TOKENS_MAX as u64), Some("u"));
    }
}
