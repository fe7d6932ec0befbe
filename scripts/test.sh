#!/usr/bin/env bash
# The whole test suite (the README's test command runs this through `npm test`):
# Debian packages the tests need, npm dependencies when absent, build,
# typecheck, lint, then every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
[[ -d node_modules ]] || npm ci
npm run --silent build
npm run --silent typecheck
npm run --silent lint

shopt -s nullglob
files=(test/unit/*.test.ts test/e2e/*.test.ts)
# One file at a time keeps the 2-core budget and port usage predictable; a hung file fails after 5 minutes.
exec node --import tsx --test --test-reporter=spec --test-concurrency=1 --test-timeout=300000 "$@" "${files[@]}"
