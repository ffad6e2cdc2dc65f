"""External tools some tests run (``promtool``...): from PATH, else from ``.tools/bin``.

``scripts/tools.sh`` puts the ones it can fetch into ``<repo>/.tools/bin``. A missing tool skips
the test locally but fails it in CI (``CI=true``), where every tool must be there.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import REPO_ROOT

TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """Return the path of the executable ``name``; skip (fail in CI) when it is absent."""
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS_BIN))
    if found:
        return found
    message = f"{name} not installed; run scripts/tools.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
