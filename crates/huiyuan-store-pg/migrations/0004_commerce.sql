-- Commerce: coupon templates and coupons, wallets (stored value) with their hash-chained
-- ledger and top-ups, and the till's sales.

CREATE TABLE coupon_templates (
    id           TEXT PRIMARY KEY,
    brand_id     TEXT NOT NULL REFERENCES brands (id),
    name         TEXT NOT NULL,
    definition   TEXT NOT NULL,
    claim_code   TEXT,
    stock        BIGINT,
    issued       BIGINT NOT NULL CHECK (issued >= 0 AND (stock IS NULL OR issued <= stock)),
    points_price BIGINT,
    status       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (brand_id, claim_code)
);
CREATE INDEX coupon_templates_brand ON coupon_templates (brand_id, id);

CREATE TABLE coupons (
    id                TEXT PRIMARY KEY,
    brand_id          TEXT NOT NULL REFERENCES brands (id),
    template_id       TEXT NOT NULL REFERENCES coupon_templates (id),
    code              TEXT NOT NULL,
    member_id         TEXT NOT NULL REFERENCES members (id),
    status            TEXT NOT NULL,
    valid_from        TIMESTAMPTZ NOT NULL,
    valid_until       TIMESTAMPTZ NOT NULL,
    source            TEXT NOT NULL,
    reference         TEXT NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL,
    redeemed_at       TIMESTAMPTZ,
    redeemed_order_id TEXT,
    redeemed_store_id TEXT,
    redeemed_channel  TEXT,
    discount          BIGINT,
    UNIQUE (brand_id, code),
    UNIQUE (brand_id, source, reference)
);
CREATE INDEX coupons_member ON coupons (brand_id, member_id, id);
CREATE INDEX coupons_template_member ON coupons (brand_id, template_id, member_id);
CREATE INDEX coupons_validity ON coupons (status, valid_until);

CREATE TABLE wallets (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    member_id  TEXT NOT NULL REFERENCES members (id),
    principal  BIGINT NOT NULL CHECK (principal >= 0),
    bonus      BIGINT NOT NULL CHECK (bonus >= 0),
    last_seq   BIGINT NOT NULL,
    last_hash  BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, member_id)
);

CREATE TABLE wallet_entries (
    id              TEXT PRIMARY KEY,
    brand_id        TEXT NOT NULL REFERENCES brands (id),
    member_id       TEXT NOT NULL REFERENCES members (id),
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    principal_delta BIGINT NOT NULL,
    bonus_delta     BIGINT NOT NULL,
    reference       TEXT NOT NULL,
    detail          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    prev_hash       BYTEA NOT NULL,
    hash            BYTEA NOT NULL,
    UNIQUE (brand_id, member_id, seq)
);

CREATE TABLE wallet_top_ups (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    reference  TEXT NOT NULL,
    member_id  TEXT NOT NULL REFERENCES members (id),
    amount     BIGINT NOT NULL,
    bonus      BIGINT NOT NULL,
    refunded   BIGINT NOT NULL CHECK (refunded >= 0 AND refunded <= amount),
    clawed     BIGINT NOT NULL CHECK (clawed >= 0 AND clawed <= bonus),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (brand_id, reference)
);

CREATE TABLE sales (
    brand_id         TEXT NOT NULL REFERENCES brands (id),
    order_id         TEXT NOT NULL,
    member_id        TEXT NOT NULL REFERENCES members (id),
    store_id         TEXT REFERENCES stores (id),
    channel          TEXT NOT NULL,
    priced           TEXT NOT NULL,
    coupons          TEXT NOT NULL,
    points_used      BIGINT NOT NULL,
    points_lots      TEXT NOT NULL,
    wallet_principal BIGINT NOT NULL,
    wallet_bonus     BIGINT NOT NULL,
    money            BIGINT NOT NULL,
    status           TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    refund_outcome   TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    refunded_at      TIMESTAMPTZ,
    PRIMARY KEY (brand_id, order_id)
);
CREATE INDEX sales_member ON sales (brand_id, member_id, created_at);
