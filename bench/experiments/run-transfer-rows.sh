#!/usr/bin/env bash
# Two ledger entries per transfer vs one transfer row, on the reference S3 transaction, interleaved
# in one run (ratios, not absolutes). Usage: bench/experiments/run-transfer-rows.sh [PGURL]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="${1:-postgresql://postgres@127.0.0.1:5432/test}"
db="canopy_transfer_rows_$$"
psql "$url" -qc "CREATE DATABASE $db"
trap 'psql "$url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
target="${url%/*}/$db"
psql "$target" -q -v n=2000 -v nballs=8000 -f "$here/../reference/schema.sql" >/dev/null
psql "$target" -q <<'SQL'
CREATE TABLE perf_s_transfer (id bigserial PRIMARY KEY, debit_user bigint NOT NULL,
  credit_user bigint NOT NULL, ball_id bigint, amount_g integer NOT NULL, reason text NOT NULL,
  at timestamptz NOT NULL);
CREATE INDEX ON perf_s_transfer (debit_user, at);
CREATE INDEX ON perf_s_transfer (credit_user, at);
UPDATE perf_s_ball SET remaining_g = 1000000000;
SQL
for _ in 1 2 3 4; do
  for script in "$here/../reference/s3-friend-collect.sql" "$here/transfer-row.sql"; do
    tps=$(pgbench -n -M prepared -c 16 -j 2 -T 4 -D nusers=2000 -D nballs=8000 -f "$script" "$target" \
      | awk '/^tps/ {print $3}')
    echo "$(basename "$script") $tps"
  done
done | awk '{s[$1]+=$2; n[$1]++} END {for (k in s) printf "%-24s %8.0f tx/s\n", k, s[k]/n[k]}'
