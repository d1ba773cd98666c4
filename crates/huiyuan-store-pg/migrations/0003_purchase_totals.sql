-- Window and cap totals are summed from a member's purchases on every sale; with the amounts
-- in the index those sums never touch the table.
CREATE INDEX purchases_member_totals ON purchases
    (brand_id, member_id, occurred_at, points, points_reversed, paid_amount, refunded_amount, status);
DROP INDEX purchases_member;
