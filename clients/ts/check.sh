#!/usr/bin/env bash
# The contract as a real client sees it: generate TypeScript types from the app's /openapi.json
# (openapi-typescript) and type-check a small "morning routine" written against them (tsc).
# Skipped, with a note, where node and npm are not installed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-.venv/bin/python}
case "$PYTHON" in /*) ;; *) PYTHON="$ROOT/$PYTHON" ;; esac

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "clients/ts: node/npm not found, TypeScript client check skipped"
  exit 0
fi
mkdir -p "$HERE/build"
(cd "$ROOT" && "$PYTHON" -c 'import json
from app.config import Settings
from app.main import create_app
print(json.dumps(create_app(Settings()).openapi(), indent=1))') > "$HERE/build/openapi.json"
cd "$HERE"
npm ci --no-audit --no-fund --loglevel=error
npx --no-install openapi-typescript build/openapi.json --output src/canopy.d.ts
npx --no-install tsc --project .
echo "clients/ts: the morning routine type-checks against the generated client"
