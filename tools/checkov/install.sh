#!/usr/bin/env bash
# Creates tools/checkov/.venv with the pinned checkov (the policy scan of k8s/ and the Dockerfiles in
# tests/deploy). Idempotent: does nothing when the installed pins match requirements.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
VENV="$HERE/.venv"
STAMP="$VENV/.installed-requirements"
HASH="$(sha256sum "$HERE/requirements.txt" | cut -c1-16)"

if [ -x "$VENV/bin/checkov" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$HASH" ]; then
  exit 0
fi
[ -x "$PYTHON" ] || { echo "error: $PYTHON not found; create the project's virtual environment first (scripts/test does)" >&2; exit 1; }
printf '==> %s\n' "installing checkov into tools/checkov/.venv (first run takes a minute)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check -r "$HERE/requirements.txt" >&2 \
  || { echo "error: pip could not install checkov; check the network to the package index and run $0 again" >&2; exit 1; }
echo "$HASH" > "$STAMP"
