# Sourced by scripts/test: make ./.venv-lowest with every direct dependency (runtime and
# test) at the lowest version pyproject.toml allows, to prove the floors true. uv resolves
# it (--resolution lowest-direct; indirect dependencies take their newest allowed version)
# and syncs the venv to exactly that, so a raised floor also moves this venv. Needs $VENV
# (scripts/venv.sh with the "test" extra, which installs uv).
set -euo pipefail

LOWEST="${LOWEST_VENV:-$ROOT/.venv-lowest}"
if [ ! -x "$LOWEST/bin/python" ]; then
    "$VENV/bin/uv" venv --quiet --python "$VENV/bin/python" "$LOWEST"
fi
"$VENV/bin/uv" pip compile --quiet --python "$LOWEST/bin/python" --resolution lowest-direct \
    --extra test --output-file "$LOWEST/requirements.txt" "$ROOT/pyproject.toml"
"$VENV/bin/uv" pip sync --quiet --python "$LOWEST/bin/python" "$LOWEST/requirements.txt"
"$VENV/bin/uv" pip install --quiet --python "$LOWEST/bin/python" --no-deps --editable "$ROOT"
