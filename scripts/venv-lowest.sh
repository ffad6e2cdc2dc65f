# Sourced by scripts/test: make ./.venv-lowest hold exactly requirements-floors.lock (every direct
# dependency, runtime and test, at the lowest version pyproject.toml allows; the indirect ones as
# they were when the lock was refreshed), then the project, editable. uv syncs it (anything not in
# the lock is removed), every file checked against its hash. Needs $VENV (scripts/venv.sh with
# requirements-dev.lock, which carries uv).
set -euo pipefail

LOWEST="${LOWEST_VENV:-$ROOT/.venv-lowest}"
if [ ! -x "$LOWEST/bin/python" ]; then
    "$VENV/bin/uv" venv --quiet --python "$VENV/bin/python" "$LOWEST"
fi
"$VENV/bin/uv" pip sync --quiet --python "$LOWEST/bin/python" --require-hashes \
    "$ROOT/requirements-floors.lock"
# Built by the floors' own setuptools, so nothing is fetched to build it.
"$VENV/bin/uv" pip install --quiet --python "$LOWEST/bin/python" --no-deps --no-build-isolation \
    --editable "$ROOT"
