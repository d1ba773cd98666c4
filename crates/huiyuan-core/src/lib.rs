//! Huiyuan's use cases. Each public method of [`Core`] is one thing a caller can do: it checks
//! the caller's permission, validates input with the domain rules, and makes its changes (and
//! the audit entry that records them) in one storage transaction.

pub mod actor;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod brands;
pub mod clock;
pub mod codes;
pub mod commerce;
pub mod credentials;
pub mod crypto;
pub mod error;
pub mod files;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod loyalty;
pub mod members;
pub mod portal;
pub mod segments;
mod sign_in_limits;
pub mod views;

use std::sync::Arc;

use huiyuan_store::Storage;
use rand::Rng;
use time::{Duration, OffsetDateTime};

pub use actor::{Actor, ActorKind};
pub use error::{CodeRejection, CoreError, ErrorCode, Result, StorageFailure};
/// The store's paging and audit filter, as the use cases take them: the edges name them here.
pub use huiyuan_store::{AuditFilter, Page};

use clock::Clock;
use crypto::{Keyring, MasterKey};

/// What [`Core::readiness`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Reachable, but `huiyuan migrate` has not run for this build.
    MigrationsPending,
    /// Not reachable; why, for the log.
    Unreachable(String),
}

/// Tunables with the defaults the SPEC and the API conventions name.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// How long a dynamic member code is valid.
    pub member_code_ttl: Duration,
    /// How long an operator stays signed in.
    pub session_ttl: Duration,
    /// How long an idempotency key and its stored response are kept.
    pub idempotency_ttl: Duration,
    /// How long a brand's model for member insights and recommendations is reused before it
    /// is rebuilt from the data.
    pub analytics_ttl: Duration,
    /// How long an authenticated API key or session is trusted without reading it again; a
    /// revocation made by another process takes effect within this time. Zero: read every time.
    pub credential_cache_ttl: Duration,
    /// Draw IDs and coupon codes from a generator seeded with this, so the same steps make
    /// the same records: for the demo generator and tests only — seeded codes can be guessed
    /// by anyone who knows the seed.
    pub seed: Option<u64>,
    /// Sign-in attempts a client address may make a minute (API and console alike).
    pub sign_in_per_minute: u32,
    /// Failed sign-ins after which an account takes no more attempts, from anywhere, until the
    /// oldest is 15 minutes old.
    pub sign_in_failures_per_account: u32,
    /// How far back a sale sent live (the API's purchase routes, the till) may be dated:
    /// late sales from an offline till or a reconciliation. Older history goes through a
    /// purchase import, which takes any date up to now. Points a backdated sale earns that
    /// have already expired are never spendable (spending expires due lots first).
    pub backdate_window: Duration,
    /// Start background work (a bulk job right after it is queued) on its own task. The demo
    /// generator turns it off and runs that work itself, in order, so a seed gives one result.
    pub background: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            member_code_ttl: Duration::seconds(60),
            session_ttl: Duration::hours(12),
            idempotency_ttl: Duration::hours(24),
            analytics_ttl: Duration::minutes(10),
            credential_cache_ttl: Duration::seconds(5),
            backdate_window: Duration::days(180),
            sign_in_per_minute: 20,
            sign_in_failures_per_account: 10,
            seed: None,
            background: true,
        }
    }
}

/// The use cases, over one storage backend and one keyring.
#[derive(Clone)]
pub struct Core {
    storage: Arc<dyn Storage>,
    keys: Keyring,
    clock: Arc<dyn Clock>,
    config: CoreConfig,
    programmes: loyalty::ProgrammeCache,
    purchase_queue: Arc<loyalty::ingest::PurchaseQueue>,
    insights: Arc<analytics::insights::InsightsCache>,
    credentials: Arc<credentials::CredentialCache>,
    sign_ins: Arc<sign_in_limits::SignInLimits>,
    faults: Option<commerce::FaultHook>,
    /// Set with [`CoreConfig::seed`].
    seeded: Option<Arc<std::sync::Mutex<rand::rngs::StdRng>>>,
    /// The last ID's time and random part, so that IDs made in one millisecond still sort
    /// in the order they were made (see [`Core::new_id`]).
    last_id: Arc<std::sync::Mutex<(u64, u128)>>,
}

impl Core {
    pub fn new(
        storage: Arc<dyn Storage>,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
        config: CoreConfig,
    ) -> Self {
        let writers = loyalty::ingest::writers_for(storage.backend());
        let config_seed = config.seed;
        Self {
            storage,
            keys: Keyring::new(master),
            clock,
            config,
            programmes: loyalty::ProgrammeCache::default(),
            purchase_queue: Arc::new(loyalty::ingest::PurchaseQueue::new(writers)),
            insights: Arc::default(),
            credentials: Arc::default(),
            sign_ins: Arc::default(),
            faults: None,
            seeded: config_seed.map(|s| Arc::new(std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(s)))),
            last_id: Arc::default(),
        }
    }

    /// This core with a test's fault hook (see [`commerce::FaultHook`]).
    pub fn with_fault_hook(mut self, hook: commerce::FaultHook) -> Self {
        self.faults = Some(hook);
        self
    }

    /// Runs the fault hook at a named step, if a test set one.
    fn fault(&self, step: &str) -> Result<()> {
        match &self.faults {
            Some(hook) => hook(step).map_err(|why| {
                CoreError::Storage(StorageFailure::Unavailable(format!(
                    "fault injected at {step}: {why}"
                )))
            }),
            None => Ok(()),
        }
    }

    /// `sqlite` or `postgres`, for logs and health checks.
    pub fn backend(&self) -> &'static str {
        self.storage.backend()
    }

    /// Whether the database answers and holds every migration this build needs: the edges ask
    /// the core, never the storage.
    pub async fn readiness(&self) -> Readiness {
        match self.storage.health().await {
            Ok(h) if h.reachable && h.migrations_current => Readiness::Ready,
            Ok(h) if h.reachable => Readiness::MigrationsPending,
            Ok(_) => Readiness::Unreachable(String::from("the database did not answer")),
            Err(e) => Readiness::Unreachable(e.to_string()),
        }
    }

    /// After a bulk load: the planner's statistics brought up to date (see
    /// [`Storage::refresh_statistics`]). A failure only costs speed, so it is logged, not returned.
    pub async fn refresh_statistics(&self) {
        if let Err(e) = self.storage.refresh_statistics().await {
            tracing::warn!(error = %e, "refreshing the query planner's statistics failed");
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A new time-ordered ID of type `T`. Within one millisecond the random part counts up
    /// from the first ID's (as ULID's monotonic generators do), so that what one transaction
    /// makes, two tier changes or a sale's events, lists and is delivered in the order made.
    fn new_id<T>(&self, make: fn(u64, u128) -> T) -> T {
        /// A ULID's random part is 80 bits.
        const RANDOM_BITS: u128 = (1 << 80) - 1;
        let ms = (self.now().unix_timestamp_nanos() / 1_000_000) as u64;
        let mut last = self.last_id.lock().unwrap_or_else(|e| e.into_inner());
        let random = match last.1.checked_add(1) {
            Some(next) if last.0 == ms && next <= RANDOM_BITS => next,
            _ => self.random() & RANDOM_BITS,
        };
        *last = (ms, random);
        make(ms, random)
    }

    /// 128 random bits: from the thread's CSPRNG (ChaCha, seeded and reseeded from the
    /// operating system: asking the system for every ID cost a system call each, 6% of
    /// recording a purchase), or the seeded generator when configured.
    fn random(&self) -> u128 {
        match &self.seeded {
            Some(rng) => rng.lock().unwrap_or_else(|e| e.into_inner()).gen(),
            None => rand::thread_rng().gen(),
        }
    }

    /// Deletes what has outlived its purpose: spent idempotency keys, expired member codes.
    pub async fn purge_expired(&self) -> Result<(u64, u64)> {
        let now = self.now();
        let mut tx = self.storage.write().await?;
        let keys = tx
            .purge_idempotency_keys(now - self.config.idempotency_ttl)
            .await?;
        let codes = tx.purge_member_codes(now - Duration::hours(1)).await?;
        tx.commit().await?;
        Ok((keys, codes))
    }
}
