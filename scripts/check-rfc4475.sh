#!/usr/bin/env bash
# Scores `sipedge sip lint` on the RFC 4475 torture messages with the project's shared check.
# Skips (loudly) where ../shared is absent, as in a user's clone; under CI=true it must run.
set -euo pipefail
cd "$(dirname "$0")/.."
check=../shared/checks/rfc4475-lint.sh
bin=${1:-target/release/sipedge}
if [[ ! -x $check ]]; then
  [[ ${CI:-} == true ]] && { echo "check-rfc4475: $check missing under CI=true"; exit 1; }
  echo "SKIPPED check-rfc4475: $check is absent (a clone without ../shared)"; exit 0
fi
echo "== rfc4475 lint score"
bash "$check" "$bin"
