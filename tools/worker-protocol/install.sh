#!/usr/bin/env bash
# Fetches, from the Python package index, the Functions language worker protocol (FunctionRpc.proto and the
# files it imports) in the compiled form that the azure-functions-runtime-v1 source distribution ships. The
# local Functions host builds its protocol messages from it (local_functions_host/worker_protocol.py).
# Nothing of it is committed. Idempotent: does nothing when the pinned archive is already here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PACKAGE="azure-functions-runtime-v1==1.2.0"
CACHE="$HERE/.cache"
ARCHIVE="$CACHE/azure_functions_runtime_v1-1.2.0.tar.gz"

if [ -f "$ARCHIVE" ]; then
  exit 0
fi
[ -x "$PYTHON" ] || { echo "error: $PYTHON not found; create the project's virtual environment first (scripts/test does)" >&2; exit 1; }
printf '==> %s\n' "downloading the Functions worker protocol ($PACKAGE source distribution)" >&2
mkdir -p "$CACHE"
"$PYTHON" -m pip download -qq --disable-pip-version-check --no-deps --no-binary :all: \
  --dest "$CACHE" "$PACKAGE" >&2 \
  || { echo "error: pip could not download $PACKAGE; check the network to the package index and run $0 again" >&2; exit 1; }
[ -f "$ARCHIVE" ] || { echo "error: $PACKAGE downloaded, but $ARCHIVE is missing; update ARCHIVE in $0" >&2; exit 1; }
