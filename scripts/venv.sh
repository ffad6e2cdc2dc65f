# Sourced by scripts/demo and scripts/test: make ./.venv (or $VENV) with Python 3.11+ and
# install the project into it, with the extras named in $1 (e.g. "test").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
fi
extras="${1:-}"
target="$ROOT"
[ -z "$extras" ] || target="$ROOT[$extras]"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --editable "$target"
