-- Loyalty engine: programme versions, point accounts, lots, the hash-chained ledger, purchases,
-- refunds, idempotent point operations, tier history, the event outbox and the job table.

CREATE TABLE programmes (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    version    INTEGER NOT NULL,
    document   TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (brand_id, version)
);

CREATE TABLE point_accounts (
    brand_id         TEXT NOT NULL REFERENCES brands (id),
    member_id        TEXT NOT NULL REFERENCES members (id),
    available        INTEGER NOT NULL CHECK (available >= 0),
    pending          INTEGER NOT NULL CHECK (pending >= 0),
    debt             INTEGER NOT NULL CHECK (debt >= 0),
    last_seq         INTEGER NOT NULL,
    last_hash        BLOB NOT NULL,
    tier_code        TEXT,
    tier_since       INTEGER,
    tier_review_at   INTEGER,
    tier_grace_until INTEGER,
    updated_at       INTEGER NOT NULL,
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
    amount          INTEGER NOT NULL,
    remaining       INTEGER NOT NULL CHECK (remaining >= 0),
    earned_at       INTEGER NOT NULL,
    matures_at      INTEGER,
    expires_at      INTEGER,
    expiry_notified INTEGER NOT NULL
);
CREATE INDEX point_lots_member ON point_lots (brand_id, member_id, status, earned_at);
CREATE INDEX point_lots_reference ON point_lots (brand_id, reference);
CREATE INDEX point_lots_maturing ON point_lots (status, matures_at);
CREATE INDEX point_lots_expiring ON point_lots (status, expires_at);

CREATE TABLE ledger_entries (
    id                TEXT PRIMARY KEY,
    brand_id          TEXT NOT NULL REFERENCES brands (id),
    member_id         TEXT NOT NULL REFERENCES members (id),
    seq               INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    available_delta   INTEGER NOT NULL,
    pending_delta     INTEGER NOT NULL,
    debt_delta        INTEGER NOT NULL,
    lot_id            TEXT,
    reference         TEXT,
    programme_version INTEGER,
    detail            TEXT NOT NULL,
    actor             TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    prev_hash         BLOB NOT NULL,
    hash              BLOB NOT NULL,
    UNIQUE (brand_id, member_id, seq)
);

CREATE TABLE purchases (
    brand_id          TEXT NOT NULL REFERENCES brands (id),
    order_id          TEXT NOT NULL,
    id                TEXT NOT NULL UNIQUE,
    member_id         TEXT NOT NULL REFERENCES members (id),
    store_id          TEXT REFERENCES stores (id),
    channel           TEXT NOT NULL,
    occurred_at       INTEGER NOT NULL,
    paid_amount       INTEGER NOT NULL,
    eligible_amount   INTEGER NOT NULL,
    points            INTEGER NOT NULL,
    points_reversed   INTEGER NOT NULL,
    refunded_amount   INTEGER NOT NULL,
    status            TEXT NOT NULL,
    lines             TEXT NOT NULL,
    earning           TEXT NOT NULL,
    programme_version INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (brand_id, order_id)
);
CREATE INDEX purchases_member ON purchases (brand_id, member_id, occurred_at);

CREATE TABLE refunds (
    brand_id        TEXT NOT NULL REFERENCES brands (id),
    refund_id       TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    member_id       TEXT NOT NULL REFERENCES members (id),
    amount          INTEGER NOT NULL,
    points_reversed INTEGER NOT NULL,
    detail          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (brand_id, refund_id)
);

CREATE TABLE point_operations (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    kind       TEXT NOT NULL,
    reference  TEXT NOT NULL,
    member_id  TEXT NOT NULL REFERENCES members (id),
    result     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
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
    created_at INTEGER NOT NULL
);
CREATE INDEX tier_changes_member ON tier_changes (brand_id, member_id, id);

CREATE TABLE outbox_events (
    id         TEXT PRIMARY KEY,
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    event_type TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    dedupe_key TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (brand_id, dedupe_key)
);
CREATE INDEX outbox_events_brand ON outbox_events (brand_id, id);

CREATE TABLE jobs (
    name             TEXT PRIMARY KEY,
    due_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_started_at  INTEGER,
    last_finished_at INTEGER,
    last_error       TEXT,
    runs             INTEGER NOT NULL
);
