//! Dashboard figures kept for a minute and refreshed in the background while operators look at
//! them, so the overview answers from memory. The API's `/v1/analytics/kpis` stays exact; the
//! console says how old its figures are and offers a refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huiyuan_core::analytics::KpiQuery;
use huiyuan_core::{Actor, Core};
use huiyuan_domain::ids::BrandId;
use time::OffsetDateTime;

/// How old figures may be when shown.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Figures older than this are recomputed in the background while they are still being viewed.
const REFRESH_AFTER: Duration = Duration::from_secs(30);
/// Figures nobody asked for in this long are dropped.
const IDLE: Duration = Duration::from_secs(600);

struct Entry {
    query: KpiQuery,
    computed: Instant,
    computed_at: OffsetDateTime,
    used: Instant,
    figures: Arc<serde_json::Value>,
}

#[derive(Default)]
pub struct KpiSnapshots {
    entries: Mutex<HashMap<(BrandId, String), Entry>>,
}

fn key(q: &KpiQuery) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        q.from, q.to, q.granularity, q.store_id, q.channel
    )
}

impl KpiSnapshots {
    /// The figures for `q` and when they were computed: from memory when younger than
    /// [`MAX_AGE`] (unless `fresh`), else computed now. The caller has checked the permission.
    pub async fn get(
        &self,
        core: &Core,
        actor: &Actor,
        q: KpiQuery,
        fresh: bool,
    ) -> huiyuan_core::Result<(Arc<serde_json::Value>, OffsetDateTime)> {
        let k = (actor.brand_id.clone(), key(&q));
        if !fresh {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = entries.get_mut(&k).filter(|e| e.computed.elapsed() < MAX_AGE) {
                e.used = Instant::now();
                return Ok((e.figures.clone(), e.computed_at));
            }
        }
        let figures =
            Arc::new(serde_json::to_value(core.kpi_report(actor, q.clone()).await?).unwrap_or_default());
        let computed_at = core.now();
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(
            k,
            Entry {
                query: q,
                computed: Instant::now(),
                computed_at,
                used: Instant::now(),
                figures: figures.clone(),
            },
        );
        Ok((figures, computed_at))
    }

    /// Recomputes the figures being viewed before they grow too old; drops the idle ones.
    pub async fn refresh(&self, core: &Core) {
        let due: Vec<(BrandId, String, KpiQuery)> = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|_, e| e.used.elapsed() < IDLE);
            entries
                .iter()
                .filter(|(_, e)| e.computed.elapsed() >= REFRESH_AFTER)
                .map(|((b, k), e)| (b.clone(), k.clone(), e.query.clone()))
                .collect()
        };
        for (brand, k, q) in due {
            let started = Instant::now();
            match core.kpi_report(&Actor::system(brand.clone()), q).await {
                Ok(view) => {
                    let figures = Arc::new(serde_json::to_value(view).unwrap_or_default());
                    if let Some(e) = self
                        .entries
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&(brand, k))
                    {
                        e.figures = figures;
                        e.computed = started;
                        e.computed_at = core.now();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dashboard figures could not be refreshed"),
            }
        }
    }
}
