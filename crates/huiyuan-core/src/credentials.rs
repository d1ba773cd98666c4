//! Recently authenticated credentials, so that a request does not read its API key or session
//! from the database every time: on PostgreSQL that read was three round trips of every
//! request, more than the work of a purchase in a group commit.
//!
//! An entry lives for [`crate::CoreConfig::credential_cache_ttl`] (never past a session's
//! end). Revoking a key, signing out and changing an operator clear this process's entries at
//! once; another process sharing the database sees the change when its entry lapses. A zero
//! TTL turns the cache off.
//!
//! Written here rather than taken from a caching crate: it is a map with a deadline per entry
//! and a generation counter (below), a few lines that no crate makes shorter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::Actor;

/// Most credentials remembered; past it, lapsed entries are dropped, and if none had lapsed,
/// all of them (a few more reads, never a wrong answer).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct CredentialCache {
    /// Keyed by the token's keyed hash, never the token itself.
    entries: Mutex<HashMap<Vec<u8>, Cached>>,
    /// Bumped by every invalidation. A lookup that read the database before an invalidation
    /// must not store what it read after it: the stale credential would outlive the change.
    generation: AtomicU64,
}

struct Cached {
    actor: Actor,
    valid_until: OffsetDateTime,
}

impl CredentialCache {
    /// The caller a token stands for, if it was authenticated recently enough.
    pub(crate) fn get(&self, token_hash: &[u8], now: OffsetDateTime) -> Option<Actor> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token_hash)
            .filter(|c| c.valid_until > now)
            .map(|c| c.actor.clone())
    }

    /// The generation to pass to [`CredentialCache::put`], read before the database is.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers an authenticated token unless the credentials changed since `generation`.
    pub(crate) fn put(
        &self,
        token_hash: Vec<u8>,
        actor: Actor,
        now: OffsetDateTime,
        valid_until: OffsetDateTime,
        generation: u64,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that `invalidate` clears under: no stale entry slips between.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, c| c.valid_until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token_hash, Cached { actor, valid_until });
    }

    /// Forgets every credential: called after a revocation, a sign-out or an operator change
    /// has committed.
    pub(crate) fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use huiyuan_domain::access::Role;
    use huiyuan_domain::ids::BrandId;
    use time::Duration;

    use super::*;
    use crate::ActorKind;

    fn actor() -> Actor {
        Actor {
            brand_id: BrandId::generate(0, 1),
            kind: ActorKind::ApiKey,
            id: "key".into(),
            role: Role::Clerk,
            request_id: None,
        }
    }

    #[test]
    fn entries_lapse_and_invalidation_wins_a_race() {
        let cache = CredentialCache::default();
        let now = OffsetDateTime::now_utc();
        let g = cache.generation();
        cache.put(b"t".to_vec(), actor(), now, now + Duration::seconds(5), g);
        assert!(cache.get(b"t", now).is_some());
        assert!(cache.get(b"t", now + Duration::seconds(5)).is_none(), "lapsed");
        assert!(cache.get(b"other", now).is_none());

        // A lookup that began before a revocation committed must not store its stale answer.
        let before = cache.generation();
        cache.invalidate();
        assert!(cache.get(b"t", now).is_none());
        cache.put(b"t".to_vec(), actor(), now, now + Duration::seconds(5), before);
        assert!(cache.get(b"t", now).is_none());
        cache.put(
            b"t".to_vec(),
            actor(),
            now,
            now + Duration::seconds(5),
            cache.generation(),
        );
        assert!(cache.get(b"t", now).is_some());
    }
}
