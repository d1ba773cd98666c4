-- Foundation: brands, stores, operators, keys, members and their identities, codes, audit,
-- idempotency. Times are Unix milliseconds (INTEGER); personal data only as ciphertext or
-- keyed hashes.

CREATE TABLE brands (
    id                  TEXT PRIMARY KEY,
    slug                TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    currency            TEXT NOT NULL,
    timezone            TEXT NOT NULL,
    code_key_ciphertext BLOB NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE stores (
    id         TEXT PRIMARY KEY,
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    code       TEXT NOT NULL,
    name       TEXT NOT NULL,
    city       TEXT,
    region     TEXT,
    active     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (brand_id, code)
);
CREATE INDEX stores_brand ON stores (brand_id, id);

CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    brand_id      TEXT NOT NULL REFERENCES brands (id),
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX operators_brand ON operators (brand_id, id);

CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    brand_id    TEXT NOT NULL REFERENCES brands (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_operator ON sessions (operator_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    brand_id    TEXT NOT NULL REFERENCES brands (id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    prefix      TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_brand ON api_keys (brand_id, id);

CREATE TABLE members (
    id             TEXT PRIMARY KEY,
    brand_id       TEXT NOT NULL REFERENCES brands (id),
    status         TEXT NOT NULL,
    merged_into    TEXT REFERENCES members (id),
    pii_ciphertext BLOB,
    birth_month    INTEGER,
    gender         TEXT,
    city           TEXT,
    household_size INTEGER,
    channel        TEXT NOT NULL,
    store_id       TEXT REFERENCES stores (id),
    consents       TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    enrolled_at    INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    erased_at      INTEGER,
    version        INTEGER NOT NULL
);
CREATE INDEX members_brand ON members (brand_id, id);
CREATE INDEX members_merged_into ON members (merged_into);

CREATE TABLE member_identities (
    brand_id  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    hash      BLOB NOT NULL,
    member_id        TEXT NOT NULL REFERENCES members (id),
    value_ciphertext BLOB NOT NULL,
    PRIMARY KEY (brand_id, kind, hash)
);
CREATE INDEX member_identities_member ON member_identities (brand_id, member_id);

CREATE TABLE member_name_prefixes (
    brand_id  TEXT NOT NULL,
    hash      BLOB NOT NULL,
    member_id TEXT NOT NULL REFERENCES members (id),
    PRIMARY KEY (brand_id, hash, member_id)
);
CREATE INDEX member_name_prefixes_member ON member_name_prefixes (brand_id, member_id);

CREATE TABLE member_tags (
    brand_id  TEXT NOT NULL,
    member_id TEXT NOT NULL REFERENCES members (id),
    tag       TEXT NOT NULL,
    PRIMARY KEY (brand_id, member_id, tag)
);
CREATE INDEX member_tags_tag ON member_tags (brand_id, tag, member_id);

CREATE TABLE member_codes (
    brand_id   TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    code_hash  BLOB NOT NULL,
    member_id  TEXT NOT NULL REFERENCES members (id),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT,
    PRIMARY KEY (brand_id, nonce),
    UNIQUE (brand_id, code_hash)
);
CREATE INDEX member_codes_expiry ON member_codes (expires_at);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    brand_id    TEXT NOT NULL REFERENCES brands (id),
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    diff        TEXT NOT NULL,
    request_id  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_events_brand ON audit_events (brand_id, id);
CREATE INDEX audit_events_target ON audit_events (brand_id, target_id, id);

-- The audit log is append-only, enforced by the database itself.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TABLE idempotency_keys (
    brand_id     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status       INTEGER,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (brand_id, scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
