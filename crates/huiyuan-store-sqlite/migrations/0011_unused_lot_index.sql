-- Every earning writes a lot, and each lot went into an index on (brand, reference) that no query
-- reads: a refund finds its sale's lots among the member's own lots (point_lots_member), which it
-- has to load anyway. Dropping it saves one random index write per sale.
DROP INDEX point_lots_reference;
