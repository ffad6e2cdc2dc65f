"""External tools some tests run (promtool, helm, checkov...): from ``.tools``, else from PATH.

``scripts/tools.sh``, ``scripts/tools-helm.sh`` and ``scripts/tools-venv.sh`` (all sourced by
``scripts/test``) put the ones they can fetch into ``<repo>/.tools/bin`` or ``<repo>/.tools/venv``
(the PyPI ones at the versions ``requirements-tools.lock`` pins), and those come first, so a
different version elsewhere on PATH does not change what the tests run.
A missing tool skips its test locally but fails it in CI (``CI=true``), where every tool that is
not ``optional`` must be there.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.settings import REPO_ROOT

TOOL_DIRS = (REPO_ROOT / ".tools" / "bin", REPO_ROOT / ".tools" / "venv" / "bin")


def tool(name: str, *, optional: bool = False) -> str:
    """Return the path of the executable ``name``; skip (fail in CI unless optional) without it."""
    found = None
    for directory in TOOL_DIRS:
        found = found or shutil.which(name, path=str(directory))
    found = found or shutil.which(name)
    if found:
        return found
    message = f"{name} not installed; ./scripts/test fetches it (scripts/tools*.sh)"
    if os.environ.get("CI") == "true" and not optional:
        pytest.fail(message)
    pytest.skip(message)
