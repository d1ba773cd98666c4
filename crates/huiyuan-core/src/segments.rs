//! Segments: the members a campaign or a bulk issue targets, described by what the database
//! stores (tier, tags, plan, enrolment channel) and what the models say (RFM segment, lifecycle
//! stage). Every part present must hold; within a part any listed value will do.

use std::collections::HashSet;

use huiyuan_analytics::lifecycle::Stage;
use huiyuan_analytics::rfm::Segment;
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::member::Channel;
use huiyuan_domain::ValidationError;
use huiyuan_store::records::{SegmentQuery, TierSet};
use serde::{Deserialize, Serialize};

use crate::members::parse_enum;
use crate::{Actor, Core, Result};

/// Members read per page while a segment is resolved.
const PAGE: u32 = 5_000;
/// Members a preview lists.
const SAMPLE: usize = 20;

/// Who is in a segment. Leave a part out to ask nothing of it; `{}` is every active member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SegmentFilter {
    /// Tier codes of the programme; the lowest tier includes members who never earned.
    pub tiers: Option<Vec<String>>,
    /// Members with any of these tags.
    pub tags: Option<Vec<String>>,
    /// Members a paid plan with one of these codes covers now.
    pub plans: Option<Vec<String>>,
    /// Enrolment channels (`app`, `mini_program`, `web_shop`, `store`, `api`, …).
    pub channels: Option<Vec<String>>,
    /// RFM segments as in `GET /v1/analytics/rfm` (`important_value`, …): members with a
    /// purchase only.
    pub rfm_segments: Option<Vec<String>>,
    /// `new`, `active`, `at_risk`, `dormant` or `churned`.
    pub lifecycle_stages: Option<Vec<String>>,
}

/// How many members a segment holds now, and some of them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentPreview {
    pub members: u64,
    /// The first members by ID.
    pub sample: Vec<MemberId>,
    /// The date of the model behind `rfm_segments` and `lifecycle_stages`, when asked; the
    /// model is rebuilt every few minutes.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub model_as_of: Option<String>,
}

/// A list part: absent, or at least one value, each parsed by `parse`.
fn list<T>(
    field: &str,
    values: &Option<Vec<String>>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> std::result::Result<Option<Vec<T>>, ValidationError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.is_empty() {
        return Err(ValidationError::field(
            field,
            "must list at least one value; leave it out to ask nothing of it",
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            parse(v.trim()).ok_or_else(|| {
                ValidationError::field(format!("{field}[{i}]"), format!("{v:?} is not {expected}"))
            })
        })
        .collect::<std::result::Result<Vec<T>, _>>()
        .map(Some)
}

/// A checked segment, ready to resolve.
struct Resolved {
    query: SegmentQuery,
    segments: Option<Vec<Segment>>,
    stages: Option<Vec<Stage>>,
}

impl Core {
    /// Checks a segment against the brand's programme.
    async fn check_segment(&self, brand: &BrandId, filter: &SegmentFilter) -> Result<Resolved> {
        let mut tx = self.storage.read().await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        drop(tx);
        let programme = &ctx.programme;
        let tiers = list(
            "tiers",
            &filter.tiers,
            |c| programme.tier_index(c).map(|_| c.to_owned()),
            "a tier of the programme",
        )?;
        let tiers = tiers.map(|wanted| {
            let lowest = programme.tiers.levels.first().map(|t| t.code.as_str());
            if wanted.iter().any(|c| Some(c.as_str()) == lowest) {
                // Members who never earned have no tier code; they are in the lowest tier.
                TierSet::NoneOf(
                    programme
                        .tiers
                        .levels
                        .iter()
                        .map(|t| t.code.clone())
                        .filter(|c| !wanted.contains(c))
                        .collect(),
                )
            } else {
                TierSet::AnyOf(wanted)
            }
        });
        let plans = list(
            "plans",
            &filter.plans,
            |c| programme.plans.iter().any(|p| p.code == c).then(|| c.to_owned()),
            "a plan of the programme",
        )?;
        let tags = list(
            "tags",
            &filter.tags,
            |t| (!t.is_empty()).then(|| t.to_owned()),
            "a tag",
        )?;
        let channels = list(
            "channels",
            &filter.channels,
            |c| parse_enum::<Channel>(c).map(|_| c.to_owned()),
            "an enrolment channel",
        )?;
        let segments = list(
            "rfm_segments",
            &filter.rfm_segments,
            parse_enum::<Segment>,
            "an RFM segment",
        )?;
        let stages = list(
            "lifecycle_stages",
            &filter.lifecycle_stages,
            parse_enum::<Stage>,
            "a lifecycle stage (new, active, at_risk, dormant, churned)",
        )?;
        Ok(Resolved {
            query: SegmentQuery {
                tiers,
                tags,
                plans: plans.map(|p| (p, self.now())),
                channels,
            },
            segments,
            stages,
        })
    }

    /// The active members of a segment now, by ID; more than `most` is refused, naming
    /// `field`, the request's name for the segment.
    pub(crate) async fn segment_members(
        &self,
        brand: &BrandId,
        filter: &SegmentFilter,
        most: usize,
        field: &str,
    ) -> Result<(Vec<MemberId>, Option<time::Date>)> {
        let resolved = self.check_segment(brand, filter).await?;
        let modelled = if resolved.segments.is_some() || resolved.stages.is_some() {
            Some(
                self.modelled_members(brand, resolved.segments.as_deref(), resolved.stages.as_deref())
                    .await?,
            )
        } else {
            None
        };
        let keep = |m: &MemberId| {
            modelled
                .as_ref()
                .is_none_or(|(_, set): &(_, HashSet<_>)| set.contains(m))
        };
        let mut members = Vec::new();
        let mut after: Option<MemberId> = None;
        let mut tx = self.storage.read().await?;
        loop {
            let page = tx
                .segment_members(brand, &resolved.query, after.as_ref(), PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            after = page.last().cloned();
            members.extend(page.into_iter().filter(|m| keep(m)));
            if members.len() > most {
                return Err(ValidationError::field(
                    field,
                    format!("holds more than {most} members; narrow it down"),
                )
                .into());
            }
            if !full {
                break;
            }
        }
        Ok((members, modelled.map(|(d, _)| d)))
    }

    /// How many members a segment holds now, and the first few.
    pub async fn preview_segment(&self, actor: &Actor, filter: &SegmentFilter) -> Result<SegmentPreview> {
        actor.require(Permission::MembersRead)?;
        let (members, as_of) = self
            .segment_members(&actor.brand_id, filter, usize::MAX, "segment")
            .await?;
        Ok(SegmentPreview {
            members: members.len() as u64,
            sample: members.into_iter().take(SAMPLE).collect(),
            model_as_of: as_of.map(|d| d.to_string()),
        })
    }
}
