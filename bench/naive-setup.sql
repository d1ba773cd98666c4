-- Tables of the naive purchase that bench/purchases.sh runs with pgbench (bench/naive-purchase.sql).
DROP TABLE IF EXISTS naive_orders, naive_ledger, naive_balances;
CREATE TABLE naive_orders (id BIGSERIAL PRIMARY KEY, member_id INT NOT NULL, amount BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE naive_ledger (id BIGSERIAL PRIMARY KEY, member_id INT NOT NULL, points BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE naive_balances (member_id INT PRIMARY KEY, points BIGINT NOT NULL);
INSERT INTO naive_balances SELECT g, 0 FROM generate_series(1, 2000) g;
