#!/usr/bin/env bash
# External tools the tests use, provided when they are not on PATH. Sourced by scripts/test
# (or run alone): quiet on success, idempotent, and never fails its caller.
#
# promtool: taken from Debian's `prometheus` package, downloaded with `apt-get download` and
# unpacked with `dpkg-deb -x`; only usr/bin/promtool is kept, as .tools/bin/promtool (the
# package is never installed and no service is started). tests/support/tools.py finds it there.

_tools_fetch_promtool() (
    set -u
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    target="$root/.tools/bin/promtool"
    if command -v promtool >/dev/null 2>&1 || [ -x "$target" ]; then
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "tools.sh: promtool could not be fetched (no apt-get/dpkg-deb); its tests will skip"
        exit 0
    fi
    work="$(mktemp -d "${TMPDIR:-/tmp}/proxy-tools.XXXXXX")" || exit 0
    trap 'rm -rf "$work"' EXIT
    # apt's download user (_apt) must be able to write here when we run as root.
    chmod 0755 "$work"
    log="$work/log"
    download() { (cd "$work" && apt-get download -qq prometheus) >>"$log" 2>&1; }
    if ! download && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >>"$log" 2>&1 && download
    fi
    package="$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)"
    if [ -z "$package" ] ||
        ! dpkg-deb -x "$package" "$work/unpacked" >>"$log" 2>&1 ||
        [ ! -f "$work/unpacked/usr/bin/promtool" ]; then
        echo "tools.sh: promtool could not be fetched (apt-get download prometheus failed); its tests will skip"
        exit 0
    fi
    mkdir -p "$root/.tools/bin" &&
        install -m 0755 "$work/unpacked/usr/bin/promtool" "$target.partial" &&
        mv -f "$target.partial" "$target" ||
        echo "tools.sh: promtool could not be copied to $target; its tests will skip"
    exit 0
)

_tools_fetch_promtool || true
unset -f _tools_fetch_promtool
