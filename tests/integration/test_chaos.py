"""The chaos soak (``scripts/chaos.py``) for two minutes with a fixed seed, as CI runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support.settings import REPO_ROOT, clean_env

SEED = 20261201
# Two minutes of soak plus start-up, stopping and the report; the test's own limit is 240 s.
RUN_LIMIT = 220
STOP_GRACE = 15
TABLE_HEADER = re.compile(r"^invariant\s+checks\s+violations\s+detail", re.MULTILINE)


def _run_soak() -> tuple[int, str]:
    """Run the soak in its own process group; on overrun, stop it (and its children)."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "scripts/chaos.py", "--minutes", "2", "--seed", str(SEED)],
        cwd=REPO_ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the soak stop its replicas, Redis and sandbox; the group kill is a backstop.
        process.terminate()
        try:
            output, _ = process.communicate(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        return -1, f"(soak overran {RUN_LIMIT} s)\n{output.decode(errors='replace')}"
    return process.returncode, output.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_minute_soak_breaks_no_invariant() -> None:
    status, output = _run_soak()

    assert TABLE_HEADER.search(output), f"no invariant table printed:\n{output}"
    assert status == 0, f"the soak exited with {status}:\n{output}"
    assert "RESULT: PASS" in output, output
