-- Paid membership plans: each term a member buys (or renews), with what it cost and how it
-- was paid, so that it can lapse, be renewed, be refunded and be reported on.

CREATE TABLE memberships (
    id              TEXT PRIMARY KEY,
    brand_id        TEXT NOT NULL REFERENCES brands (id),
    member_id       TEXT NOT NULL REFERENCES members (id),
    plan_code       TEXT NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    fee             INTEGER NOT NULL,
    paid_with       TEXT NOT NULL,
    status          TEXT NOT NULL,
    reference       TEXT NOT NULL,
    renewal_of      TEXT REFERENCES memberships (id),
    refunded_amount INTEGER NOT NULL,
    lapse_notified  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (brand_id, reference)
);
CREATE INDEX memberships_member ON memberships (brand_id, member_id, starts_at);
CREATE INDEX memberships_ending ON memberships (status, ends_at);
CREATE INDEX memberships_renewal ON memberships (renewal_of);
