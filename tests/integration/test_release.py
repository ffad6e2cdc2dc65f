"""./scripts/release writes a new version into every copy (tests/unit/test_version.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.settings import REPO_ROOT
from tests.unit.test_version import COPIES


def test_the_release_script_rewrites_every_copy(tmp_path: Path) -> None:
    paths = [*COPIES, "proxy/__init__.py", "CHANGELOG.md", "scripts/release"]
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, tmp_path / path)
    subprocess.run(  # noqa: S603 - our own script on a copy
        [tmp_path / "scripts" / "release", "9.8.7"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for path, read in COPIES.items():
        assert read((tmp_path / path).read_text()) == "9.8.7", path
    assert '__version__ = "9.8.7"' in (tmp_path / "proxy" / "__init__.py").read_text()
    changelog = (tmp_path / "CHANGELOG.md").read_text()
    assert re.search(
        r"^## \[Unreleased\]\n\n## \[9\.8\.7\] - \d{4}-\d\d-\d\d$", changelog, re.MULTILINE
    )
