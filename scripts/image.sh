#!/usr/bin/env bash
# Build the container image from ./Dockerfile with buildah and smoke-run it: no Docker engine
# and no container registry needed.
#
#   sudo ./scripts/image.sh          # as root; prints a summary, exits non-zero on any failure
#
# Needs: buildah (Debian: `apt-get install -y buildah`) and, the first time, debootstrap
# (`apt-get install -y debootstrap`) plus Python 3 on the host. Storage is buildah's default
# (/var/lib/containers/storage) with the vfs driver and chroot isolation, which work without
# overlayfs, fuse or user namespaces.
#
# 1. Base image. python:3.11-slim-bookworm cannot be pulled here, so a stand-in is built once
#    and reused: Debian bookworm (debootstrap --variant=minbase from the apt mirror this machine
#    uses) with python3 (3.11), python3-venv and ca-certificates, committed from scratch as
#    $BASE_IMAGE (localhost/python-base:3.11). Its python is /usr/bin/python3, not
#    /usr/local/bin/python: the Dockerfile only relies on `python3` in the build stage and on
#    the venv's `python` at run time, so it builds on either base. The first run takes a few
#    minutes; delete the base (`buildah --storage-driver vfs rmi localhost/python-base:3.11`)
#    to rebuild it.
# 2. The image: `buildah build --build-arg PYTHON_IMAGE=$BASE_IMAGE --format docker` (the
#    Docker format keeps HEALTHCHECK, which the OCI format drops), tagged $IMAGE. pip in the
#    build stage is given this host's CA bundle through a bind mount that exists during RUN
#    only (so a TLS-intercepting proxy's CA is trusted; nothing lands in a layer). No layer
#    cache (vfs copies every layer in full, so caches grow by gigabytes): each run reinstalls
#    the dependencies (about a minute) and removes the image the previous run left untagged.
# 3. Checks on the image's config: User 10001:10001, ENTRYPOINT ["python","-m","proxy"],
#    HEALTHCHECK, port 8080, OCI labels; and on its files: no pip, no sources, bytecode present.
# 4. Smoke run: a working container from the image; the image's own ENTRYPOINT (read from its
#    config) with `--sandbox` runs under `buildah run` with no --user, so the image's USER
#    applies; chroot isolation shares the host network, so PROXY_PORT is a free loopback port.
#    Then: /healthz, /readyz and /v1/products answer 200; the server process's real and
#    effective uid/gid are 10001 (from /proc/<pid>/status); the image's HEALTHCHECK command
#    passes inside the container; SIGTERM stops it with status 0 and a "stopped" log line;
#    no file under the container's root was created or changed by the run (buildah's own
#    mount points aside), so a read-only root filesystem is enough.
#    The working container is removed afterwards (also on failure).
#
# Environment: IMAGE (default localhost/1nce-product-proxy:<version>), BASE_IMAGE (default
# localhost/python-base:3.11), DEBIAN_MIRROR (default: the first Debian URI in apt's sources,
# else http://deb.debian.org/debian), PIP_BUILD_CA (default /etc/ssl/certs/ca-certificates.crt;
# empty to give pip no bundle).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' proxy/__init__.py | head -n 1)"
IMAGE="${IMAGE:-localhost/1nce-product-proxy:${VERSION}}"
BASE_IMAGE="${BASE_IMAGE:-localhost/python-base:3.11}"
PIP_BUILD_CA="${PIP_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}"
SUITE=bookworm
export BUILDAH_ISOLATION=chroot

say() { printf '== %s\n' "$*"; }
fail() {
    if [ -n "${work:-}" ] && [ -s "$work/run.log" ]; then
        echo "-- the container's output (last 40 lines):" >&2
        tail -n 40 "$work/run.log" >&2
    fi
    printf 'image.sh: FAILED: %s\n' "$*" >&2
    exit 1
}
bh() { buildah --storage-driver vfs "$@"; }

[ "$(id -u)" = 0 ] || fail "run as root (buildah with the vfs driver and chroot isolation)"
command -v buildah >/dev/null 2>&1 || fail "buildah not installed (apt-get install -y buildah)"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed on the host for the checks"

# One run at a time on this machine (two would race for the tag and the storage).
exec 9>"${TMPDIR:-/tmp}/1nce-product-proxy-image.lock"
if ! flock --nonblock 9; then
    say "another scripts/image.sh is running; waiting for it"
    flock --timeout 1800 9 || fail "gave up waiting for the other scripts/image.sh"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/proxy-image.XXXXXX")"
containers=()
server_pid=""
cleanup() {
    set +e
    [ -z "$server_pid" ] || kill -KILL "$server_pid" 2>/dev/null
    for c in "${containers[@]}"; do bh rm "$c" >/dev/null 2>&1; done
    rm -rf "$work"
}
trap cleanup EXIT

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local found
    found="$(
        {
            sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
            sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
        } | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n 1
    )" || true
    echo "${found:-http://deb.debian.org/debian}"
}

image_exists() { bh inspect --type image "$1" >/dev/null 2>&1; }

# -- 1. the local base image -------------------------------------------------------------------
build_base() {
    command -v debootstrap >/dev/null 2>&1 ||
        fail "debootstrap not installed (apt-get install -y debootstrap), needed once for $BASE_IMAGE"
    local mirror ctr mnt
    mirror="$(debian_mirror)"
    say "base: debootstrap $SUITE from $mirror into a scratch container (a few minutes, once)"
    ctr="$(bh from --name "python-base-build-$$" scratch)"
    containers+=("$ctr")
    mnt="$(bh mount "$ctr")"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$mnt" "$mirror" >"$work/debootstrap.log" 2>&1; then
        umount -l "$mnt/proc" "$mnt/sys" 2>/dev/null || true # left mounted by a failed stage 2
        tail -n 20 "$work/debootstrap.log" >&2
        fail "debootstrap failed (log above)"
    fi
    # Like the slim images: no apt lists, package caches, docs or man pages; the host's
    # resolv.conf and hostname (debootstrap copies them) are not part of an image.
    rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/* "$mnt"/var/cache/debconf/*-old \
        "$mnt"/usr/share/doc/* "$mnt"/usr/share/man/* "$mnt"/usr/share/info/* \
        "$mnt"/var/log/* "$mnt"/etc/resolv.conf "$mnt"/etc/hostname
    bh umount "$ctr" >/dev/null
    bh config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd python3 \
        --label org.opencontainers.image.title=python-base \
        --label "org.opencontainers.image.description=Local stand-in for python:3.11-slim-$SUITE: Debian $SUITE minbase with python3, python3-venv" \
        "$ctr"
    bh commit --rm --quiet "$ctr" "$BASE_IMAGE" >/dev/null
    containers=()
}

start=$SECONDS
if image_exists "$BASE_IMAGE"; then
    say "base: $BASE_IMAGE present (cached)"
else
    build_base
fi
base_seconds=$((SECONDS - start))

# -- 2. the image ----------------------------------------------------------------------------
revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$revision" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi
build_args=(
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE"
    --build-arg "VERSION=$VERSION"
    --build-arg "REVISION=$revision"
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)
if [ -n "$PIP_BUILD_CA" ] && [ -r "$PIP_BUILD_CA" ]; then
    cp "$PIP_BUILD_CA" "$work/pip-ca.crt"
    printf '[global]\ncert = /etc/pip-build-ca.crt\n' >"$work/pip.conf"
    build_args+=(-v "$work/pip-ca.crt:/etc/pip-build-ca.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro")
fi
say "build: $IMAGE from $BASE_IMAGE"
start=$SECONDS
previous="$(bh images --quiet --no-trunc "$IMAGE" 2>/dev/null | head -n 1)" || previous=""
if ! bh build --isolation chroot --format docker --pull=never \
    "${build_args[@]}" -f Dockerfile -t "$IMAGE" . >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    fail "buildah build failed (log above)"
fi
current="$(bh images --quiet --no-trunc "$IMAGE" | head -n 1)"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    bh rmi "$previous" >/dev/null 2>&1 || true # the last build's image, now untagged
fi
build_seconds=$((SECONDS - start))

# -- 3. the image's config and files -----------------------------------------------------------
bh inspect --type image "$IMAGE" >"$work/inspect.json"
# One field of the image's Docker config (the format that keeps HEALTHCHECK), as JSON.
field() {
    python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["Docker"]["config"]
v = c.get(sys.argv[2])
print(json.dumps(v.get("Test") if sys.argv[2] == "Healthcheck" and v else v, separators=(",", ":")))' \
        "$work/inspect.json" "$1"
}
user="$(field User)"
entrypoint="$(field Entrypoint)"
healthcheck="$(field Healthcheck)"
ports="$(field ExposedPorts)"
labels="$(field Labels)"
size="$(bh images --format '{{.Size}}' "$IMAGE" | head -n 1)"
[ "$user" = '"10001:10001"' ] || fail "image User is '$user', expected 10001:10001"
[ "$entrypoint" = '["python","-m","proxy"]' ] || fail "image Entrypoint is $entrypoint"
case "$healthcheck" in '["CMD","python",'*) ;; *) fail "image Healthcheck is $healthcheck" ;; esac
case "$ports" in *'"8080/tcp"'*) ;; *) fail "image does not expose 8080/tcp: $ports" ;; esac
case "$labels" in *"\"org.opencontainers.image.version\":\"$VERSION\""*) ;;
    *) fail "OCI version label missing: $labels" ;;
esac

ctr="$(bh from --pull-never --name "proxy-smoke-$$" "$IMAGE")"
containers+=("$ctr")
mnt="$(bh mount "$ctr")"
[ -e "$mnt/opt/venv/bin/python" ] || fail "no /opt/venv/bin/python in the image"
[ ! -e "$mnt/opt/venv/bin/pip" ] || fail "pip is still in the runtime venv"
[ ! -e "$mnt/src" ] || fail "build sources (/src) leaked into the runtime stage"
pyc="$(find "$mnt/opt/venv/lib" -path '*/proxy/__pycache__/__main__.*.pyc' | head -n 1)"
[ -n "$pyc" ] || fail "the proxy package is not compiled to bytecode"

# -- 4. smoke run ------------------------------------------------------------------------------
# The service must write nothing (the image is meant for a read-only root filesystem).
# `buildah run` cannot use a read-only root: it creates its own mount points on every run
# (/etc/hosts, /etc/resolv.conf, /etc/hostname, /run/.containerenv) and checks the working
# directory. So every file changed under the container's root during the run is listed
# afterwards, and anything but those is a failure.
touch "$work/marker"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mapfile -t command < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$entrypoint")
say "run: buildah run (chroot, host network) -- ${command[*]} --sandbox, PROXY_PORT=$port"
bh run --isolation chroot --env "PROXY_PORT=$port" --env PROXY_HOST=127.0.0.1 "$ctr" -- \
    "${command[@]}" --sandbox >"$work/run.log" 2>&1 &
run_pid=$!

get() {
    python3 - "$1" <<'EOF'
import sys, urllib.request as u
try:
    with u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=2) as response:
        print(response.status)
except Exception as exc:  # any failure is "not answering (yet)": print its HTTP code or 0
    print(getattr(exc, "code", 0))
EOF
}
descendants() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            found[root] = 1
            do {
                more = 0
                for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; more = 1 }
            } while (more)
            for (p in found) if (p != root) print p
        }'
}

started=$SECONDS
until [ "$(get "http://127.0.0.1:$port/healthz")" = 200 ]; do
    if ! kill -0 "$run_pid" 2>/dev/null; then
        fail "the container exited before /healthz answered"
    fi
    [ $((SECONDS - started)) -lt 60 ] || fail "/healthz did not answer 200 within 60 s"
    sleep 0.5
done
ready_seconds=$((SECONDS - started))
for pid in $(descendants "$run_pid"); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-m proxy --sandbox'; then
        server_pid="$pid"
    fi
done
[ -n "$server_pid" ] || fail "no 'python -m proxy' process under buildah run"
uids="$(awk '/^Uid:/ { print $2, $3 }' "/proc/$server_pid/status")"
gids="$(awk '/^Gid:/ { print $2, $3 }' "/proc/$server_pid/status")"
[ "$uids" = "10001 10001" ] || fail "server process runs with uid '$uids', expected 10001"
[ "$gids" = "10001 10001" ] || fail "server process runs with gid '$gids', expected 10001"
for path in /readyz /v1/products; do
    status="$(get "http://127.0.0.1:$port$path")"
    [ "$status" = 200 ] || fail "GET $path answered $status"
done
mapfile -t probe < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])[1:]))' "$healthcheck")
bh run --isolation chroot --env "PROXY_PORT=$port" "$ctr" -- "${probe[@]}" >"$work/health.log" 2>&1 ||
    fail "the image's HEALTHCHECK command failed: $(cat "$work/health.log")"

kill -TERM "$server_pid"
stopped=$SECONDS
status=0
wait "$run_pid" || status=$?
server_pid=""
stop_seconds=$((SECONDS - stopped))
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
grep -q '"event": "stopped"' "$work/run.log" || fail "no 'stopped' log line after SIGTERM"
written="$(
    find "$mnt" -xdev \( -newer "$work/marker" -o -cnewer "$work/marker" \) -printf '/%P\n' |
        grep -v -x -E '/|/etc|/etc/(hosts|resolv\.conf|hostname)|/app|/run|/run/\.containerenv' || true
)"
[ -z "$written" ] || fail "the service wrote to the root filesystem: $(tr "\n" " " <<<"$written")"

cat <<EOF
== image.sh: OK
image:        $IMAGE ($size), base $BASE_IMAGE
config:       User ${user//\"/}, Entrypoint $entrypoint, ports $ports
healthcheck:  $healthcheck
run:          /healthz 200 after ${ready_seconds}s; /readyz, /v1/products 200; uid/gid $uids/$gids;
              HEALTHCHECK command passed; SIGTERM -> exit 0 in ${stop_seconds}s; nothing written
time:         base ${base_seconds}s, build ${build_seconds}s, total ${SECONDS}s
EOF
