"""requirements.lock agrees with pyproject.toml, and the image installs it with hashes checked."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.settings import REPO_ROOT

PROJECT = "onence-product-proxy"
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


@dataclass(frozen=True)
class Pin:
    version: Version
    marker: str | None
    hashes: tuple[str, ...]
    via: str


def parse_lock(text: str) -> dict[str, Pin]:
    """Read a hashed requirements file as uv writes it: pin, hash lines, then '# via'."""
    pins: dict[str, Pin] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        hashes: list[str] = []
        via = ""
        for follower in lines[index + 1 :]:
            stripped = follower.strip()
            if stripped.startswith("--hash=sha256:"):
                hashes.append(stripped.removeprefix("--hash=sha256:").rstrip(" \\"))
            elif stripped.startswith("# via"):
                via = stripped.removeprefix("# via").strip()
            else:
                break
        marker = match["marker"].strip() if match["marker"] else None
        pins[canonicalize_name(match["name"])] = Pin(
            Version(match["version"]), marker, tuple(hashes), via
        )
    return pins


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _declared() -> list[Requirement]:
    project = _pyproject()
    runtime = project["project"]["dependencies"]  # type: ignore[index]
    # The image carries the otel extra, so that OTEL_* alone turns tracing on.
    otel = project["project"]["optional-dependencies"]["otel"]  # type: ignore[index]
    build = project["build-system"]["requires"]  # type: ignore[index]
    return [Requirement(text) for text in [*runtime, *otel, *build]]


@pytest.fixture(scope="module")
def pins() -> dict[str, Pin]:
    return parse_lock((REPO_ROOT / "requirements.lock").read_text())


def test_every_declared_dependency_is_pinned_within_its_range(pins: dict[str, Pin]) -> None:
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run ./scripts/lock"
        pin = pins[name]
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"requirements.lock pins {name}=={pin.version}, outside {requirement}: "
            "run ./scripts/lock"
        )
        if requirement.marker is not None:
            assert pin.marker is not None, (
                f"{name}: the lock dropped the marker {requirement.marker}"
            )


def test_nothing_is_pinned_for_a_dependency_pyproject_no_longer_declares(
    pins: dict[str, Pin],
) -> None:
    declared = {canonicalize_name(requirement.name) for requirement in _declared()}
    for name, pin in pins.items():
        direct = f"{PROJECT} (pyproject.toml)" in pin.via or "[build-system]" in pin.via
        if direct:
            assert name in declared, f"{name} is pinned as a direct dependency but not declared"
        else:
            assert pin.via, f"{name} is pinned but nothing needs it"


def test_every_pin_carries_hashes(pins: dict[str, Pin]) -> None:
    assert len(pins) >= len(_declared())
    for name, pin in pins.items():
        assert pin.hashes, f"{name} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in pin.hashes), name


def test_the_parser_sees_a_disagreement(tmp_path: Path) -> None:
    # The checks above must be able to fail: an out-of-range pin and a missing hash.
    lock = (REPO_ROOT / "requirements.lock").read_text()
    broken = re.sub(r"^aiohttp==\S+", "aiohttp==3.11.0", lock, flags=re.MULTILINE)
    assert parse_lock(broken)["aiohttp"].version == Version("3.11.0")
    aiohttp = next(r for r in _declared() if r.name == "aiohttp")
    assert not aiohttp.specifier.contains(Version("3.11.0"))
    bare = tmp_path / "bare.lock"
    bare.write_text("redis==6.0.0\n    # via onence-product-proxy (pyproject.toml)\n")
    assert parse_lock(bare.read_text())["redis"].hashes == ()


def test_the_image_installs_the_lock_with_hashes_required() -> None:
    # Instructions as Docker reads them: continuation lines joined.
    dockerfile = re.sub(r"\\\n\s*", " ", (REPO_ROOT / "Dockerfile").read_text())
    assert "COPY requirements.lock" in dockerfile
    install = re.search(r"pip install[^\n]*--require-hashes[^\n]*-r requirements\.lock", dockerfile)
    assert install is not None, (
        "the Dockerfile must install requirements.lock with --require-hashes"
    )
    # The project itself then goes in without resolving anything again.
    assert re.search(r"pip install[^\n]*--no-deps[^\n]*--no-build-isolation", dockerfile)
