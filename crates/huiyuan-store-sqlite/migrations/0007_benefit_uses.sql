-- Each use of a benefit — the tier's or a plan's discount at the till, a perk handed over, a
-- partner code given — with the member's tier at that moment, for the benefit usage report.

CREATE TABLE benefit_uses (
    id        TEXT PRIMARY KEY,
    brand_id  TEXT NOT NULL REFERENCES brands (id),
    member_id TEXT NOT NULL REFERENCES members (id),
    -- tier_discount, plan_discount, perk or partner_code
    benefit   TEXT NOT NULL,
    -- The perk, the plan's code or the partner pool; empty for the tier discount.
    code      TEXT NOT NULL,
    tier_code TEXT NOT NULL,
    plan_code TEXT,
    store_id  TEXT,
    reference TEXT NOT NULL,
    used_at   INTEGER NOT NULL,
    UNIQUE (brand_id, benefit, code, reference)
);
CREATE INDEX benefit_uses_time ON benefit_uses (brand_id, used_at);
