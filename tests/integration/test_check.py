"""``product-proxy`` as an operator runs it: ``--version``, ``check``, and secrets as files."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy import __version__
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from tests.support.redis import RedisServer, node_command
from tests.support.sandbox import Sandbox
from tests.support.settings import REPO_ROOT, clean_env

# The console script pip installs beside the interpreter running the tests.
COMMAND = Path(sys.executable).parent / "product-proxy"
SECRET = "s3cr3t-not-to-print"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def line(self, name: str) -> str:
        """The report's line for check ``name`` (exactly one must exist)."""
        lines = [line for line in self.stdout.splitlines() if line.split(" ", 1)[0] == name]
        assert len(lines) == 1, self.stdout
        return lines[0]


async def _run(env: dict[str, str], *args: str) -> Outcome:
    # Asynchronous, so the sandbox in this test's event loop keeps answering meanwhile.
    process = await asyncio.create_subprocess_exec(
        COMMAND,
        *args,
        env={**clean_env(), **env},
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    except TimeoutError:
        # A command that should have ended (refused its settings) serves instead: no leftover.
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Outcome(process.returncode, stdout.decode(), stderr.decode())


def _upstream(sandbox: Sandbox, secret: str = SANDBOX_CLIENT_SECRET) -> dict[str, str]:
    return {
        "PROXY_UPSTREAM_URL": sandbox.url,
        "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
        "PROXY_CLIENT_SECRET": secret,
    }


async def test_version_prints_the_package_version() -> None:
    outcome = await _run({}, "--version")
    assert outcome.returncode == 0
    assert outcome.stdout.strip() == f"product-proxy {__version__}"


async def test_python_m_proxy_is_the_same_command() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--version", stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert stdout.decode().strip() == f"product-proxy {__version__}"


async def test_check_passes_against_the_sandbox_and_asks_for_one_token(sandbox: Sandbox) -> None:
    outcome = await _run(_upstream(sandbox), "check")
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines()[0] == f"product-proxy {__version__} check"
    assert outcome.line("settings").startswith("settings  ok    upstream " + sandbox.url)
    assert "store memory" in outcome.line("settings")
    assert outcome.line("store").startswith("store     ok")
    assert outcome.line("token").startswith(f"token     ok    issued by {sandbox.url}/oauth/token")
    assert outcome.stdout.splitlines()[-1] == "all checks passed"
    assert sandbox.state.token_requests == 1
    # A check reads nothing else: no catalog is fetched.
    assert sandbox.state.products_requests == 0


async def test_check_with_a_wrong_secret_fails_naming_it_without_printing_it(
    sandbox: Sandbox,
) -> None:
    outcome = await _run(_upstream(sandbox, secret=SECRET), "check")
    assert outcome.returncode == 1
    token = outcome.line("token")
    assert token.startswith("token     FAIL  token endpoint refused the credentials (400 ")
    assert "check PROXY_CLIENT_ID and PROXY_CLIENT_SECRET" in token
    assert outcome.stdout.splitlines()[-1] == "FAILED: token"
    assert SECRET not in outcome.stdout + outcome.stderr
    assert sandbox.state.token_requests == 1
    assert sandbox.state.tokens_issued == 0


async def test_check_reports_an_unreachable_upstream(sandbox: Sandbox) -> None:
    await sandbox.stop()
    outcome = await _run(_upstream(sandbox), "check")
    assert outcome.returncode == 1
    assert outcome.line("token").startswith("token     FAIL  upstream unreachable")


async def test_check_sandbox_needs_no_credentials() -> None:
    outcome = await _run({}, "check", "--sandbox")
    assert outcome.returncode == 0, outcome
    assert outcome.line("token").startswith("token     ok")


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    server = RedisServer("--requirepass", SECRET)
    server.start()
    yield server
    server.cleanup()


async def test_check_reaches_redis_and_fails_when_it_is_down(
    sandbox: Sandbox, redis_with_password: RedisServer
) -> None:
    port = redis_with_password.port
    env = {**_upstream(sandbox), "PROXY_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{port}/0"}
    up = await _run(env, "check")
    assert up.returncode == 0, up
    assert f"store Redis at redis://127.0.0.1:{port}" in up.line("settings")
    assert up.line("store").startswith("store     ok    PING answered in")
    # The check asks for a token on a private store: the deployment's keys are untouched.
    assert node_command(port, "KEYS", "*", password=SECRET) == []

    wrong = await _run({**env, "PROXY_REDIS_URL": f"redis://:wrong@127.0.0.1:{port}/0"}, "check")
    assert wrong.returncode == 1
    assert "error=AuthenticationError" in wrong.stderr

    redis_with_password.stop()
    down = await _run(env, "check")
    assert down.returncode == 1
    assert down.line("store").startswith(
        f"store     FAIL  no answer from Redis at redis://127.0.0.1:{port}"
    )
    assert down.line("token").startswith("token     ok")
    assert down.stdout.splitlines()[-1] == "FAILED: store"
    assert "redis_failed" in down.stderr
    assert SECRET not in up.stdout + up.stderr + down.stdout + down.stderr


async def test_bad_settings_exit_2_before_any_check(sandbox: Sandbox) -> None:
    outcome = await _run({**_upstream(sandbox), "PROXY_CACHE_TTL": "soon"}, "check")
    assert outcome.returncode == 2
    assert outcome.stderr.startswith("configuration error: PROXY_CACHE_TTL:")
    assert outcome.stdout == ""
    assert sandbox.state.token_requests == 0


async def test_secrets_are_read_from_files_and_the_environment_wins(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "PROXY_CLIENT_SECRET").write_text(SANDBOX_CLIENT_SECRET + "\n")
    (tmp_path / "PROXY_CLIENT_ID").write_text(SANDBOX_CLIENT_ID)
    from_files = {"PROXY_UPSTREAM_URL": sandbox.url, "PROXY_SECRETS_DIR": str(tmp_path)}
    outcome = await _run(from_files, "check")
    assert outcome.returncode == 0, outcome
    assert sandbox.state.tokens_issued == 1

    overridden = await _run({**from_files, "PROXY_CLIENT_SECRET": SECRET}, "check")
    assert overridden.returncode == 1
    assert "refused the credentials" in overridden.line("token")
    assert sandbox.state.tokens_issued == 1


@pytest.mark.parametrize("problem", ["missing", "file"])
async def test_a_secrets_dir_that_is_not_a_directory_is_a_configuration_error(
    tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "secrets"
    if problem == "file":
        path.write_text("not a directory")
    outcome = await _run({"PROXY_SECRETS_DIR": str(path)}, "check", "--sandbox")
    assert outcome.returncode == 2
    assert (
        outcome.stderr
        == f"configuration error: PROXY_SECRETS_DIR: {str(path)!r} is not a directory\n"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"billing:dup-key-1\nportal:dup-key-1\n", "the same key is listed twice"),
        (b"billing:\xff\xfedup-key-1\n", "the file is not UTF-8 text"),
    ],
    ids=["duplicate", "not-utf-8"],
)
@pytest.mark.parametrize("args", [("--sandbox",), ("check", "--sandbox")], ids=["serve", "check"])
async def test_an_unusable_key_file_at_start_up_is_exit_2(
    tmp_path: Path, content: bytes, reason: str, args: tuple[str, ...]
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_bytes(content)
    outcome = await _run(
        {"PROXY_API_KEYS_FILE": str(keys), "PROXY_API_KEYS": "listed:kept-key", "PROXY_PORT": "0"},
        *args,
    )
    assert outcome.returncode == 2, outcome.stdout + outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("configuration")]
    assert len(errors) == 1, outcome.stderr
    assert errors[0].startswith("configuration error: PROXY_API_KEYS_FILE: ")
    assert f"is not a usable key file: {reason}" in errors[0]
    assert "dup-key-1" not in outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
