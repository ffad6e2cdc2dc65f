"""One version: the package's; every copy that cannot read it equals it."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from importlib.metadata import version

import yaml

from proxy import USER_AGENT, __version__
from tests.support.settings import REPO_ROOT


def _chart(text: str) -> object:
    return yaml.safe_load(text)["appVersion"]


def _dockerfile(text: str) -> object:
    match = re.search(r"^ARG VERSION=(\S+)$", text, re.MULTILINE)
    return match[1] if match else None


def _openapi(text: str) -> object:
    return json.loads(text)["info"]["version"]


COPIES: dict[str, Callable[[str], object]] = {
    "helm/product-proxy/Chart.yaml": _chart,
    "Dockerfile": _dockerfile,
    "proxy/web/openapi.json": _openapi,
}
"""Each file that carries its own copy of the version, and how to read it."""


def test_the_package_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "proxy.__version__"}
    assert version("onence-product-proxy") == __version__


def test_every_copy_equals_the_package_version() -> None:
    for path, read in COPIES.items():
        assert read((REPO_ROOT / path).read_text()) == __version__, path


def test_the_user_agent_names_the_version() -> None:
    assert f"1nce-product-proxy/{__version__}" == USER_AGENT
