# Sourced by scripts/run and scripts/test: makes this checkout ready on a fresh machine.
# Idempotent and quiet when nothing changed; prints one line per step it takes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_WANTED="3.13"
step() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

find_python() {
  local candidate
  if command -v pyenv >/dev/null 2>&1; then
    candidate="$(cd "$ROOT" && pyenv which python 2>/dev/null || true)"
    if [ -n "$candidate" ] && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" 2>/dev/null; then
      echo "$candidate"; return
    fi
  fi
  for candidate in python3.13 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" 2>/dev/null; then
      command -v "$candidate"; return
    fi
  done
  fail "Python $PY_WANTED is required (the Azure Functions base image's version). Install it (e.g. 'pyenv install 3.13.0'; this checkout's .python-version selects it) and run this again."
}

apt_install() {
  # Installs Debian packages that are missing; needs root (or sudo without a password).
  local missing=() pkg sudo=""
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "missing system packages: ${missing[*]}; install them with apt-get as root"
    sudo="sudo -n"
  fi
  step "installing system packages: ${missing[*]}"
  # A fresh machine may have no package lists yet: update once when the first try fails.
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 2>/dev/null; then
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 \
      || fail "apt-get could not install ${missing[*]}"
  fi
}

pip_quietly() {
  # pip's notes about unused local index locations are noise here; real errors still show.
  "$VENV/bin/python" -m pip --quiet "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; } >&2
}

ensure_venv() {
  local requirements="$1" stamp hash
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" 2>/dev/null; then
    local python; python="$(find_python)"
    step "creating the virtual environment in .venv with $("$python" --version)"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    pip_quietly install --upgrade pip
  fi
  hash="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)"
  stamp="$VENV/.installed-$(basename "$requirements" .txt)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$hash" ]; then
    step "installing Python dependencies from $(basename "$requirements") (first run takes a minute)"
    if ! pip_quietly install --disable-pip-version-check -r "$requirements"; then
      fail "pip could not install $requirements; check the network to the package index and run this again"
    fi
    echo "$hash" > "$stamp"
  fi
}
