# 1NCE Product Proxy: the service's container image.
#
#   docker build -t 1nce-product-proxy:dev .
#   docker run --rm -p 8080:8080 --read-only 1nce-product-proxy:dev --sandbox
#
# scripts/image.sh builds and tags it with the package's version (proxy/__init__.py).
# Arguments after the image name are passed to `python -m proxy` (the same as `product-proxy`):
# `--sandbox` for the demo, `check` to check the set-up, `--version`; settings come from
# PROXY_* variables or files (README, "Configuration").
#
# Base image: PYTHON_IMAGE, a Python 3.11+ image whose `python3` has the `venv` module, used by
# both stages (the venv's interpreter link must resolve in the runtime stage). It is pinned by
# tag; to pin it by digest as well, pass the digest the registry reports, e.g.
#   docker buildx imagetools inspect python:3.11-slim-bookworm     (prints "Digest: sha256:...")
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# or write that value into the ARG below. scripts/image.sh builds with a local Debian base
# (Debian's python3 at /usr/bin/python3) where no registry can be reached.
#
# Run time: as the numeric user 10001:10001 (no passwd entry needed, so Kubernetes'
# runAsNonRoot can verify it), with nothing to write: the venv is compiled to bytecode here and
# PYTHONDONTWRITEBYTECODE is set, so a read-only root filesystem works and no volume is needed.
# The exec-form ENTRYPOINT makes python PID 1, so SIGTERM from `docker stop` or Kubernetes
# reaches the service, which handles SIGTERM/SIGINT itself (readiness off, drain, exit 0). The
# service starts no child processes, so there are no zombies to reap and `--init`/tini is not
# needed. Nothing at run time uses a shell (exec-form ENTRYPOINT and HEALTHCHECK).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project and its dependencies, as a wheel installed into /opt/venv ----
# checkov reads `FROM ${PYTHON_IMAGE}` as an untagged image; the tag is in the ARG's default
# above (never `latest`; tests/shipping/test_image.py asserts it), hence this one suppression:
# checkov:skip=CKV_DOCKER_7:the base image is the ARG PYTHON_IMAGE, whose default is pinned by tag
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# `python3` exists in the official images and in Debian's python3 package alike.
RUN python3 -m venv /opt/venv

WORKDIR /src
# The locked dependencies first (a layer that changes only with the lock), then only what
# the wheel is built from (.dockerignore admits nothing else to the context).
COPY requirements.lock ./
# Every dependency, and setuptools to build the project with, at the exact versions of
# requirements.lock, each file checked against its sha256 (./scripts/lock refreshes it).
# Wheels only: the slim base has no compiler, and a wheel runs no code at install time.
RUN /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements.lock

COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy

# The project itself, built with the locked setuptools and installed without resolving
# anything again. pip and setuptools are then removed from the venv (nothing needs them at
# run time), and everything left is compiled to bytecode, so the service never writes a
# .pyc (read-only root filesystem).
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv \
    && /opt/venv/bin/product-proxy --version

# ---- runtime: the base image plus the venv, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
# The package's version; ./scripts/release keeps it equal (tests/unit/test_version.py).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="1nce-product-proxy" \
      org.opencontainers.image.description="Caching proxy for the 1NCE Management API product catalog" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/venv /opt/venv

# An empty, root-owned working directory: the service reads an optional .env from here
# (mount one as a file if wanted; environment variables are the usual way).
WORKDIR /app

USER 10001:10001

EXPOSE 8080

# Liveness from inside the container, with python (slim images have no curl): GET /healthz on
# PROXY_MANAGEMENT_PORT when it is set (the probes are served there and only there), else on
# PROXY_PORT. It reads the container's environment (a port set only in a mounted .env is not
# seen), bypasses any HTTP proxy set there and probes 127.0.0.1, so keep PROXY_HOST at its
# default (0.0.0.0) or a loopback address. Kubernetes ignores HEALTHCHECK (the chart's probes
# use /healthz and /readyz); Docker and Podman use it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('PROXY_MANAGEMENT_PORT') or os.environ.get('PROXY_PORT') or '8080'; opener = u.build_opener(u.ProxyHandler({})); sys.exit(0 if opener.open(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["python", "-m", "proxy"]
