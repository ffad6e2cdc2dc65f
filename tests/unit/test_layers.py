"""The layers of docs/architecture.md, held by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.settings import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = 4


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The package is read from ``root`` (first on the path), so a copy can be checked too.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(  # noqa: S603 - the venv's own lint-imports, fixed arguments
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_layer_contract_is_kept() -> None:
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("web/products.py", "from proxy.cache.lookup import Lookup as _Lookup", "never the cache"),
        ("catalog/view.py", "import redis as _redis", "Only the backplane imports redis"),
        ("cache/memo.py", "from proxy.web import answers as _answers", "Calls go one way"),
        ("sandbox/faults.py", "from proxy.web import errors as _errors", "imports nothing"),
    ],
    ids=["handler-reaches-the-cache", "redis-outside-the-backplane", "upward", "sandbox"],
)
def test_an_import_across_a_layer_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(REPO_ROOT / "proxy", tmp_path / "proxy")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "proxy" / module).open("a") as source:
        source.write(f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS - 1} kept, 1 broken." in result.stdout
    assert next(row for row in result.stdout.splitlines() if "BROKEN" in row).count(broken) == 1
