-- Bulk operations run in the background (issuing coupons to a list of members), with their
-- progress; and partner code pools (異業聯盟): codes from partner brands handed out once each.

CREATE TABLE bulk_jobs (
    id           TEXT PRIMARY KEY,
    brand_id     TEXT NOT NULL REFERENCES brands (id),
    kind         TEXT NOT NULL,
    reference    TEXT NOT NULL,
    status       TEXT NOT NULL,
    input        TEXT NOT NULL,
    total        BIGINT NOT NULL,
    processed    BIGINT NOT NULL,
    succeeded    BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    errors       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    lease_owner  TEXT,
    lease_until  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    UNIQUE (brand_id, kind, reference)
);
CREATE INDEX bulk_jobs_open ON bulk_jobs (status, created_at);

CREATE TABLE partner_pools (
    id          TEXT PRIMARY KEY,
    brand_id    TEXT NOT NULL REFERENCES brands (id),
    name        TEXT NOT NULL,
    partner     TEXT NOT NULL,
    description TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX partner_pools_brand ON partner_pools (brand_id, id);

CREATE TABLE partner_codes (
    brand_id    TEXT NOT NULL REFERENCES brands (id),
    pool_id     TEXT NOT NULL REFERENCES partner_pools (id),
    code        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    member_id   TEXT REFERENCES members (id),
    reference   TEXT,
    assigned_at TIMESTAMPTZ,
    PRIMARY KEY (pool_id, code),
    UNIQUE (brand_id, pool_id, reference)
);
CREATE INDEX partner_codes_free ON partner_codes (pool_id, member_id, seq);
CREATE INDEX partner_codes_member ON partner_codes (brand_id, member_id);
