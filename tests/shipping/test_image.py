"""The container image: Dockerfile lint and policy, its shape, .dockerignore, and a real build.

hadolint and checkov come from ``.tools`` or PATH (``scripts/tools-venv.sh`` installs both
into ``.tools/venv``); a missing one skips its test locally and fails it in CI (``CI=true``).
The build-and-run test needs buildah and root (``scripts/image.sh``); without them it skips,
in CI too, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from tests.support.net import free_port
from tests.support.processes import ProxyProcess
from tests.support.settings import REPO_ROOT, clean_env
from tests.support.tools import tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
IMAGE_SCRIPT = REPO_ROOT / "scripts" / "image.sh"
TOOLS_SCRIPT = REPO_ROOT / "scripts" / "tools-venv.sh"
VENV = "/opt/venv"
USER = "10001:10001"
ENTRYPOINT = ["python", "-m", "proxy"]
# Each checkov suppression must be one of these, and carry its reason in the Dockerfile.
ALLOWED_CHECKOV_SKIPS = frozenset({"CKV_DOCKER_7"})  # FROM ${PYTHON_IMAGE}: tag is in the ARG
BASE_IMAGE = "localhost/python-base:3.11"


def run(
    args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell in the repository, capturing text output."""
    return subprocess.run(  # noqa: S603 - fixed tool paths, arguments from this file
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env=env,
    )


# -- a small Dockerfile reader ------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every ``keyword`` instruction of this stage, in order."""
        return [i.arguments for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: list[str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


@cache
def dockerfile() -> Dockerfile:
    parsed = Dockerfile(global_args=[], stages=[])
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", instruction.arguments, re.IGNORECASE)
            assert match, f"FROM without a stage name: {instruction.arguments}"
            parsed.stages.append(Stage(base=match[1], name=match[2]))
        elif parsed.stages:
            parsed.stages[-1].instructions.append(instruction)
        else:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            parsed.global_args.append(instruction.arguments)
    return parsed


def assignments(arguments: str) -> dict[str, str]:
    """``KEY=value KEY2="v 2"`` (ENV, LABEL) as a dict."""
    pairs = (word.partition("=") for word in shlex.split(arguments))
    return {key: value for key, _, value in pairs}


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec-form) instruction's argv; fails on the shell form."""
    try:
        argv: Any = json.loads(arguments)
    except ValueError:
        pytest.fail(f"not exec form (JSON array): {arguments}")
    assert isinstance(argv, list), arguments
    assert all(isinstance(word, str) for word in argv), arguments
    return [str(word) for word in argv]


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's command, without its options and the CMD keyword."""
    (healthcheck,) = dockerfile().final.all("HEALTHCHECK")
    options, separator, command = healthcheck.partition("CMD ")
    assert separator, f"HEALTHCHECK without CMD: {healthcheck}"
    assert all(word.startswith("--") for word in options.split()), options
    return exec_form(command)


# -- linters ---------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_checkov_passes_with_documented_skips_only() -> None:
    # --skip-download: no call to Prisma Cloud for guidelines (there is no network here).
    args = ["-f", "Dockerfile", "--framework", "dockerfile", "--skip-download", "-o", "json"]
    result = run([tool("checkov"), *args], timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout)
    summary = report["summary"]
    assert (summary["failed"], summary["parsing_errors"]) == (0, 0), summary
    assert summary["passed"] > 0, summary
    passed = {check["check_id"] for check in report["results"]["passed_checks"]}
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= passed  # HEALTHCHECK and USER are there
    for check in report["results"]["skipped_checks"]:
        assert check["check_id"] in ALLOWED_CHECKOV_SKIPS, check["check_id"]
        assert check["check_result"]["suppress_comment"].strip(), f"no reason: {check}"


# -- the Dockerfile's shape -------------------------------------------------------------------


def test_both_stages_use_the_base_named_by_one_arg() -> None:
    parsed = dockerfile()
    assert [stage.name for stage in parsed.stages] == ["build", "runtime"]
    assert {stage.base for stage in parsed.stages} == {"${PYTHON_IMAGE}"}
    (default,) = [arg for arg in parsed.global_args if arg.startswith("PYTHON_IMAGE=")]
    image = default.removeprefix("PYTHON_IMAGE=")
    name, _, tag = image.partition(":")
    assert name == "python", image
    assert re.fullmatch(r"3\.(1[1-9])-slim(-\w+)?", tag), f"not a pinned slim 3.11+ tag: {image}"


def test_no_latest_tag_anywhere() -> None:
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword in {"FROM", "ARG"}:
            assert ":latest" not in instruction.arguments, instruction
    assert all(stage.base != "latest" for stage in dockerfile().stages)


def test_build_stage_makes_a_venv_without_caches_and_compiles_it() -> None:
    build = dockerfile().stage("build")
    env: dict[str, str] = {}
    for arguments in build.all("ENV"):
        env |= assignments(arguments)
    assert env["PIP_NO_CACHE_DIR"] == "1"
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"
    commands = " && ".join(build.all("RUN"))
    assert f"python3 -m venv {VENV}" in commands
    installs = re.findall(r"pip install ([^&]*)", commands)
    assert installs, commands
    assert all("--no-cache-dir" in install for install in installs), installs
    assert f"compileall -q {VENV}" in commands


def test_runtime_stage_copies_only_the_venv() -> None:
    runtime = dockerfile().stage("runtime")
    assert runtime.all("COPY") == [f"--from=build {VENV} {VENV}"]
    assert runtime.all("ADD") == []
    assert runtime.all("RUN") == [], "the runtime stage runs nothing (no shell needed)"


def test_runtime_user_is_numeric_and_not_root() -> None:
    users = dockerfile().final.all("USER")
    assert users == [USER]
    uid, gid = (int(part) for part in users[0].split(":"))
    assert uid > 0
    assert gid > 0


def test_entrypoint_is_exec_form_python_module() -> None:
    (entrypoint,) = dockerfile().final.all("ENTRYPOINT")
    assert exec_form(entrypoint) == ENTRYPOINT
    assert dockerfile().final.all("CMD") == []  # arguments after the image go to the service


def test_runtime_environment() -> None:
    env: dict[str, str] = {}
    for arguments in dockerfile().final.all("ENV"):
        env |= assignments(arguments)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith(f"{VENV}/bin:"), env["PATH"]


def test_exposes_the_service_port() -> None:
    assert dockerfile().final.all("EXPOSE") == ["8080"]


def test_oci_labels() -> None:
    labels: dict[str, str] = {}
    for arguments in dockerfile().final.all("LABEL"):
        labels |= assignments(arguments)
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.base.name"] == "${PYTHON_IMAGE}"


def test_healthcheck_is_exec_form_python() -> None:
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<HEALTHCHECK>", "exec")
    assert "/healthz" in argv[2]
    assert "PROXY_PORT" in argv[2]
    assert "PROXY_MANAGEMENT_PORT" in argv[2]


def test_healthcheck_command_passes_on_a_live_service_and_fails_without_one() -> None:
    argv = [sys.executable, *healthcheck_argv()[1:]]
    # A proxy in the environment must not be used for the loopback probe.
    env = clean_env() | {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    with ProxyProcess(args=["--sandbox"]) as proxy:
        healthy = run(argv, timeout=20, env=env | {"PROXY_PORT": str(proxy.port)})
        # The variable is set but empty (as a chart leaves an unset value): PROXY_PORT counts.
        empty = run(
            argv,
            timeout=20,
            env=env | {"PROXY_PORT": str(proxy.port), "PROXY_MANAGEMENT_PORT": ""},
        )
    assert healthy.returncode == 0, healthy.stderr
    assert empty.returncode == 0, empty.stderr
    dead = run(argv, timeout=20, env=env | {"PROXY_PORT": str(free_port())})
    assert dead.returncode != 0


def test_healthcheck_command_probes_the_management_port_when_one_is_set() -> None:
    argv = [sys.executable, *healthcheck_argv()[1:]]
    env = clean_env() | {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    with ProxyProcess(args=["--sandbox"], management=True) as proxy:
        ports = {"PROXY_PORT": str(proxy.port), "PROXY_MANAGEMENT_PORT": str(proxy.management_port)}
        healthy = run(argv, timeout=20, env=env | ports)
        # The API port alone answers /healthz with 404 now: the command must not go there.
        api_only = run(argv, timeout=20, env=env | {"PROXY_PORT": str(proxy.port)})
    assert healthy.returncode == 0, healthy.stderr
    assert api_only.returncode != 0
    assert "404" in api_only.stderr, api_only.stderr
    dead = run(argv, timeout=20, env=env | ports)
    assert dead.returncode != 0


# -- .dockerignore ------------------------------------------------------------------------------


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, pattern) per line; Docker's syntax: ``*`` and ``?`` stay within a directory."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                piece, re.escape(piece)
            )
        rules.append((exclude, re.compile(regex)))
    return rules


def in_context(path: str) -> bool:
    """Whether ``path`` reaches the build context: the last rule matching it or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    included = True
    for exclude, regex in ignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = not exclude
    return included


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/venv/bin/checkov",
        ".env",
        ".mypy_cache/3.11/proxy.json",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "proxy/__pycache__/app.cpython-311.pyc",
        "onence_product_proxy.egg-info/PKG-INFO",
        "build/lib/proxy/app.py",
        "tests/conftest.py",
        "helm/product-proxy/Chart.yaml",
        "scripts/test",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert not in_context(path)


def test_dockerignore_names_the_local_state_explicitly() -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", ".tools", ".env"} <= lines


def test_dockerignore_admits_what_the_build_copies() -> None:
    copies = dockerfile().stage("build").all("COPY")
    sources = [word for arguments in copies for word in arguments.split()[:-1]]
    assert sources == ["requirements.lock", "pyproject.toml", "README.md", "LICENSE", "proxy"]
    package = [
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "proxy").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "proxy/web/openapi.json" in package
    for path in ["requirements.lock", "pyproject.toml", "README.md", "LICENSE", *package]:
        assert in_context(path), path


# -- scripts and the real build -----------------------------------------------------------------


def test_scripts_are_executable() -> None:
    for script in (IMAGE_SCRIPT, TOOLS_SCRIPT):
        assert os.access(script, os.X_OK), script
        assert script.read_text().startswith("#!/usr/bin/env bash\n"), script


def image_script_can_work() -> str | None:
    """Why scripts/image.sh cannot run here, or None when it can."""
    buildah = shutil.which("buildah")
    if buildah is None:
        return "buildah not installed: apt-get install -y buildah debootstrap"
    if os.geteuid() != 0:
        return "scripts/image.sh runs buildah as root (vfs storage, chroot isolation)"
    if shutil.which("debootstrap") is None:
        probe = [buildah, "--storage-driver", "vfs", "inspect", "--type", "image", BASE_IMAGE]
        if run(probe, timeout=60).returncode != 0:
            return f"debootstrap not installed and no {BASE_IMAGE}: apt-get install -y debootstrap"
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_builds_and_serves_as_user_10001() -> None:
    reason = image_script_can_work()
    if reason:
        pytest.skip(reason)
    result = run(["bash", str(IMAGE_SCRIPT)], timeout=1700, env=clean_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "== image.sh: OK" in result.stdout, output[-6000:]
