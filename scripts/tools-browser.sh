#!/usr/bin/env bash
# Debian's Chromium, for the headless browser tests of the pages (tests/integration/
# test_pages_browser.py), installed when /usr/bin/chromium is missing. Sourced by scripts/test
# (or run alone): quiet on success, idempotent, and never fails its caller.
#
# Unlike the other tools this one is installed (apt-get install), not unpacked: Chromium needs
# dozens of shared libraries that only the package manager resolves. That takes root or
# passwordless sudo; without either the browser tests skip and say why.

_tools_browser() (
    set -u
    target=/usr/bin/chromium
    skip="the browser tests will skip"
    if [ -x "$target" ]; then
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "tools-browser.sh: no $target and no apt-get to install Debian's chromium; $skip"
        exit 0
    fi
    if [ "$(id -u)" = 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        as_root=(sudo -n)
    else
        echo "tools-browser.sh: no $target, and installing it needs root or passwordless sudo; $skip"
        exit 0
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/proxy-tools-browser.XXXXXX")" || exit 0
    trap 'rm -f "$log"' EXIT
    install_chromium() {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1
    }
    # A fresh image has no package lists yet: update once and try again.
    if ! install_chromium; then
        "${as_root[@]}" apt-get update -qq >>"$log" 2>&1 && install_chromium
    fi
    if [ ! -x "$target" ]; then
        echo "tools-browser.sh: apt-get install chromium failed ($(tail -n 1 "$log")); $skip"
    fi
    exit 0
)

_tools_browser || true
unset -f _tools_browser
