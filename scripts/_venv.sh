# Sourced by scripts/*: make .venv and install the project into it (idempotent, quiet).
# Usage: . scripts/_venv.sh [EXTRAS]   e.g. EXTRAS="dev,all"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIRCONNECTOR_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dirconnector needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
_extras="${1:-}"
_stamp="$VENV/.dirconnector-installed-${_extras//,/-}"
if [ ! -f "$_stamp" ] || [ "$ROOT/pyproject.toml" -nt "$_stamp" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    if [ -n "$_extras" ]; then
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$_extras]" 2>&1 \
            | grep -v -E "^WARNING: Location|^$" || true
    else
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT" 2>&1 \
            | grep -v -E "^WARNING: Location|^$" || true
    fi
    "$VENV/bin/python" -c "import dirconnector" || { echo "installing dirconnector failed" >&2; exit 1; }
    touch "$_stamp"
fi
export PATH="$VENV/bin:$PATH"
