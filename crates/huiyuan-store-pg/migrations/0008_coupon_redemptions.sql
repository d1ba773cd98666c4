-- The brand's latest redemptions (the console's and `GET /v1/coupon-redemptions`' list).
CREATE INDEX coupons_redeemed ON coupons (brand_id, redeemed_at) WHERE status = 'redeemed';
