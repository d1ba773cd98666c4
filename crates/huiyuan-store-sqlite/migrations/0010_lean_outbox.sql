-- Every sale writes two outbox events. As a rowid table with a TEXT primary key, a unique
-- (brand, dedupe key) that also held the many NULL keys, and a (brand, id) index, each event
-- went into four B-trees; keyed by (brand, id) without a rowid, with the dedupe keys in a
-- partial index, it goes into one. Same rows, same order, same uniqueness.
CREATE TABLE outbox_events_keyed (
    brand_id   TEXT NOT NULL REFERENCES brands (id),
    id         TEXT NOT NULL,
    event_type TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    dedupe_key TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (brand_id, id)
) WITHOUT ROWID;
INSERT INTO outbox_events_keyed (brand_id, id, event_type, subject, payload, dedupe_key, created_at)
    SELECT brand_id, id, event_type, subject, payload, dedupe_key, created_at FROM outbox_events;
DROP TABLE outbox_events;
ALTER TABLE outbox_events_keyed RENAME TO outbox_events;
CREATE UNIQUE INDEX outbox_events_dedupe ON outbox_events (brand_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
