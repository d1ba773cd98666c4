-- The naive version of one purchase, for pgbench (bench/purchases.sh): insert the order,
-- insert one ledger row, update the balance. No rules, tiers, lots, hash chain or events.
\set member random(1, 2000)
\set amount random(1500, 120000)
BEGIN;
INSERT INTO naive_orders (member_id, amount) VALUES (:member, :amount);
INSERT INTO naive_ledger (member_id, points) VALUES (:member, :amount / 100);
UPDATE naive_balances SET points = points + :amount / 100 WHERE member_id = :member;
END;
