#!/usr/bin/env bash
# The whole test suite (the README's test command runs this through `npm test`):
# Debian packages the tests need and the pinned Node 24 when the system Node is
# older, npm dependencies when absent, build, typecheck, lint, then every unit
# and end-to-end test on the system Node and again on Node 24. Arguments go to
# both runs of `node --test` (e.g. `npm test -- --test-name-pattern=revoked`).
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
suite() {
  "$1" --import tsx --test --test-reporter=spec --test-concurrency=1 --test-timeout=300000 "${@:2}" "${files[@]}"
}

# A system Node of 24 or later is the Node 24 run: once is enough.
if (($(node -p 'process.versions.node.split(".")[0]') >= 24)); then
  suite node "$@"
  exit
fi

# Otherwise both runs, the second even when the first failed, so one CI run
# tells whether a failure belongs to one runtime or to both.
node24=$(bash scripts/node24.sh)
failed=()
for runtime in node "$node24"; do
  label="Node $("$runtime" --version | cut -c2-)"
  [[ $runtime == node ]] && label+=" (system)"
  echo "== $label =="
  suite "$runtime" "$@" || failed+=("$label (exit $?)")
done

# On success nothing follows the Node 24 run's own totals, which stay the last lines.
if ((${#failed[@]} > 0)); then
  echo "== the suite failed on: $(printf '%s; ' "${failed[@]}" | sed 's/; $//') ==" >&2
  exit 1
fi
