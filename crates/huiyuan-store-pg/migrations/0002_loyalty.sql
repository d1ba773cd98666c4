-- Loyalty engine: programme versions, point accounts, lots, the hash-chained ledger, purchases,
-- refunds, idempotent point operations, tier history, the event outbox and the job table.

CREATE TABLE programmes (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    version    BIGINT NOT NULL,
    document   TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, version)
);

CREATE TABLE point_accounts (
    brand_id         TEXT NOT NULL REFERENCES brands (id),
    member_id        TEXT NOT NULL REFERENCES members (id),
    available        BIGINT NOT NULL CHECK (available >= 0),
    pending          BIGINT NOT NULL CHECK (pending >= 0),
    debt             BIGINT NOT NULL CHECK (debt >= 0),
    last_seq         BIGINT NOT NULL,
    last_hash        BYTEA NOT NULL,
    tier_code        TEXT,
    tier_since       TIMESTAMPTZ,
    tier_review_at   TIMESTAMPTZ,
    tier_grace_until TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, member_id)
);
CREATE INDEX point_accounts_review ON point_accounts (tier_review_at);

CREATE TABLE point_lots (
    id              TEXT PRIMARY KEY,
    brand_id        TEXT NOT NULL REFERENCES brands (id),
    member_id       TEXT NOT NULL REFERENCES members (id),
    status          TEXT NOT NULL,
    source          TEXT NOT NULL,
    reference       TEXT,
    amount          BIGINT NOT NULL,
    remaining       BIGINT NOT NULL CHECK (remaining >= 0),
    earned_at       TIMESTAMPTZ NOT NULL,
    matures_at      TIMESTAMPTZ,
    expires_at      TIMESTAMPTZ,
    expiry_notified BOOLEAN NOT NULL
);
CREATE INDEX point_lots_member ON point_lots (brand_id, member_id, status, earned_at);
CREATE INDEX point_lots_reference ON point_lots (brand_id, reference);
CREATE INDEX point_lots_maturing ON point_lots (status, matures_at);
CREATE INDEX point_lots_expiring ON point_lots (status, expires_at);

CREATE TABLE ledger_entries (
    id                TEXT PRIMARY KEY,
    brand_id          TEXT NOT NULL REFERENCES brands (id),
    member_id         TEXT NOT NULL REFERENCES members (id),
    seq               BIGINT NOT NULL,
    kind              TEXT NOT NULL,
    available_delta   BIGINT NOT NULL,
    pending_delta     BIGINT NOT NULL,
    debt_delta        BIGINT NOT NULL,
    lot_id            TEXT,
    reference         TEXT,
    programme_version BIGINT,
    detail            TEXT NOT NULL,
    actor             TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    prev_hash         BYTEA NOT NULL,
    hash              BYTEA NOT NULL,
    UNIQUE (brand_id, member_id, seq)
);

CREATE TABLE purchases (
    brand_id          TEXT NOT NULL REFERENCES brands (id),
    order_id          TEXT NOT NULL,
    id                TEXT NOT NULL UNIQUE,
    member_id         TEXT NOT NULL REFERENCES members (id),
    store_id          TEXT REFERENCES stores (id),
    channel           TEXT NOT NULL,
    occurred_at       TIMESTAMPTZ NOT NULL,
    paid_amount       BIGINT NOT NULL,
    eligible_amount   BIGINT NOT NULL,
    points            BIGINT NOT NULL,
    points_reversed   BIGINT NOT NULL,
    refunded_amount   BIGINT NOT NULL,
    status            TEXT NOT NULL,
    lines             TEXT NOT NULL,
    earning           TEXT NOT NULL,
    programme_version BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, order_id)
);
CREATE INDEX purchases_member ON purchases (brand_id, member_id, occurred_at);

CREATE TABLE refunds (
    brand_id        TEXT NOT NULL REFERENCES brands (id),
    refund_id       TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    member_id       TEXT NOT NULL REFERENCES members (id),
    amount          BIGINT NOT NULL,
    points_reversed BIGINT NOT NULL,
    detail          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, refund_id)
);

CREATE TABLE point_operations (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    kind       TEXT NOT NULL,
    reference  TEXT NOT NULL,
    member_id  TEXT NOT NULL REFERENCES members (id),
    result     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, kind, reference)
);
CREATE INDEX point_operations_member ON point_operations (brand_id, member_id, kind, created_at);

CREATE TABLE tier_changes (
    id         TEXT PRIMARY KEY,
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    member_id  TEXT NOT NULL REFERENCES members (id),
    from_tier  TEXT,
    to_tier    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tier_changes_member ON tier_changes (brand_id, member_id, id);

CREATE TABLE outbox_events (
    id         TEXT PRIMARY KEY,
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    event_type TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    dedupe_key TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (brand_id, dedupe_key)
);
CREATE INDEX outbox_events_brand ON outbox_events (brand_id, id);

CREATE TABLE jobs (
    name             TEXT PRIMARY KEY,
    due_at           TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    last_started_at  TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ,
    last_error       TEXT,
    runs             BIGINT NOT NULL
);
