-- S3 with one row per transfer (debit account, credit account, amount: TigerBeetle's shape)
-- instead of two ledger entries; compare with ../reference/s3-friend-collect.sql (see run-transfer-rows.sh)
\set b random(1, :nballs)
\set c random(1, :nusers)
BEGIN;
UPDATE perf_s_ball SET remaining_g = remaining_g - 5 WHERE id = :b AND remaining_g >= 5;
INSERT INTO perf_s_transfer (debit_user, credit_user, ball_id, amount_g, reason, at) VALUES (1 + (:b - 1) / 4, :c, :b, 5, 'stolen', now());
UPDATE perf_s_balance SET balance_g = balance_g + 5 WHERE user_id = :c;
END;
