-- Every sale writes two outbox events. Each went into three indexes: the primary key on id, a
-- unique (brand, dedupe key) that also held the many NULL keys, and (brand, id) for listing.
-- The primary key (brand, id) serves the listing, and the dedupe keys go in a partial index:
-- one index per event. Same rows, same order, same uniqueness.
ALTER TABLE outbox_events
    DROP CONSTRAINT outbox_events_pkey,
    DROP CONSTRAINT outbox_events_brand_id_dedupe_key_key,
    ADD PRIMARY KEY (brand_id, id);
DROP INDEX outbox_events_brand;
CREATE UNIQUE INDEX outbox_events_dedupe ON outbox_events (brand_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
