# Sourced by scripts/demo, scripts/test and scripts/lock: make ./.venv (or $VENV) with Python
# 3.11+ and make it hold exactly what the lock file named in $1 pins (requirements.lock for the
# demo, requirements-dev.lock for the tests), then the project itself, editable.
#
# Every file is checked against the lock's sha256 and nothing is resolved, so a release on PyPI
# after the lock was made changes nothing here. A pinned package found at another version (one
# installed by hand, say) is put back to the locked one, and said so.
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
lock="$ROOT/${1:?venv.sh: name the lock file to install}"
if [ -x "$VENV/bin/uv" ]; then
    # uv from an earlier run (the dev lock carries it): checks the venv in milliseconds.
    # Not quiet: a package put back to its locked version is named ("- redis==8.2.0 + redis==8.1.0").
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --require-hashes --no-deps -r "$lock"
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps \
        --no-build-isolation --editable "$ROOT"
else
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
        --no-deps -r "$lock"
    # Built by the locked setuptools, so nothing is fetched to build it.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --no-build-isolation --editable "$ROOT"
fi
