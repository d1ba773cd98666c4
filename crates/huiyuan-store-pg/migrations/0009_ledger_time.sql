-- The dashboard reads a brand's points flows from a date onwards (the outstanding points before
-- it come from the accounts' balances), instead of grouping every entry the brand ever made.
CREATE INDEX ledger_entries_time ON ledger_entries (brand_id, created_at);
