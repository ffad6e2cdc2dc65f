"""The service against its own OpenAPI document: Schemathesis on a real process, and the routes.

The slow test runs the Schemathesis CLI, bounded by a fixed seed, an example count and a time
budget, against ``python -m proxy --sandbox`` with API keys and an admin token set. The fast
tests check the served document itself: the packaged bytes, valid OpenAPI 3.0, and the same
operations as the router.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import hdrs
from pydantic import SecretStr

from proxy.callers.keys import fingerprint
from proxy.web.pipeline import UNMATCHED
from tests.support.processes import ProxyProcess
from tests.support.sandbox import MakeProxy, basic_auth
from tests.support.settings import REPO_ROOT, clean_env

FUZZ_KEY = "fuzz-key"
ADMIN_TOKEN = "fuzz-admin"
ADMIN_PATH = "/admin/refresh"
TOKEN_PATH = "/management-api/oauth/token"
DOCUMENT = REPO_ROOT / "proxy" / "web" / "openapi.json"
CONFIG = Path(__file__).with_name("schemathesis.toml")
# ``python -m schemathesis`` does not exist (the package has no __main__); its CLI is ``st``.
ST = Path(sys.executable).with_name("st")

SEED = 20240917
MAX_EXAMPLES = 50
REQUEST_TIMEOUT = 10
# The time budgets bound each run: fuzzing and stateful phases repeat until theirs is spent.
CATALOG_BUDGET = 30
ADMIN_BUDGET = 8
TOKEN_BUDGET = 8
# Every check, less those that need what this API does not have: ``use_after_free`` and
# ``ensure_resource_availability`` follow resources that operations create and delete (none
# here: everything is a GET but an idempotent refresh), and ``object_level_authorization``
# compares what two different users may see (there is one key and one admin token).
CHECKS = ("--checks", "all")
EXCLUDED_CHECKS = ("use_after_free", "ensure_resource_availability", "object_level_authorization")
# The drop-in token endpoint answers missing or wrong credentials as 1NCE does, with a 400
# (errorCode AuthValidationError or CognitoAuthenticationError), where these two expect a 401.
TOKEN_EXCLUDED_CHECKS = ("ignored_auth", "missing_required_header")
# What the CLI could leave in its working directory; it runs in a temporary one, and these
# must not appear in the checkout either.
LEFTOVERS = (".hypothesis", ".schemathesis", "schemathesis-report")


def _schemathesis(
    base_url: str,
    workdir: Path,
    authorization: str,
    budget: int,
    *selection: str,
    exclude: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``st run`` against the served document; return its exit code and output."""
    argv = [
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: {authorization}",
        *CHECKS,
        "--exclude-checks",
        ",".join((*EXCLUDED_CHECKS, *exclude)),
        *selection,
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(budget),
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {**clean_env(), "HYPOTHESIS_STORAGE_DIRECTORY": str(workdir / ".hypothesis")}
    return subprocess.run(  # noqa: S603 - the venv's own st, fixed arguments
        argv,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=budget + 60,
        check=False,
    )


def _shown(name: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"--- {name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_schemathesis_finds_no_failure_against_the_running_service(tmp_path: Path) -> None:
    assert ST.exists(), f"the schemathesis CLI is not installed next to {sys.executable}"
    present = {name for name in LEFTOVERS if (REPO_ROOT / name).exists()}
    env = {
        "PROXY_API_KEYS": FUZZ_KEY,
        "PROXY_ADMIN_TOKEN": ADMIN_TOKEN,
        # Every admin refresh may go through; the sandbox upstream does not rate-limit.
        "PROXY_ADMIN_REFRESH_INTERVAL": "0",
        "PROXY_LOG_LEVEL": "warning",
        "PROXY_ACCESS_LOG": "off",
        # Event streams end after a second, so each of Schemathesis' requests gets a whole
        # answer (a baseline event) to check, well within its request timeout.
        "PROXY_STREAM_MAX_AGE": "1",
    }
    with ProxyProcess(env, args=["--sandbox"]) as service:
        # The catalog and probes with an API key; the admin endpoint with its own token, and
        # the drop-in token endpoint with the key as Basic credentials, since Schemathesis
        # sends one set of headers per run.
        catalog = _schemathesis(
            service.url,
            tmp_path,
            f"Bearer {FUZZ_KEY}",
            CATALOG_BUDGET,
            *("--exclude-path", ADMIN_PATH, "--exclude-path", TOKEN_PATH),
        )
        admin = _schemathesis(
            service.url,
            tmp_path,
            f"Bearer {ADMIN_TOKEN}",
            ADMIN_BUDGET,
            *("--include-path", ADMIN_PATH),
        )
        token = _schemathesis(
            service.url,
            tmp_path,
            basic_auth(fingerprint(FUZZ_KEY), FUZZ_KEY),
            TOKEN_BUDGET,
            *("--include-path", TOKEN_PATH),
            exclude=TOKEN_EXCLUDED_CHECKS,
        )
        alive = service.alive
        records = service.log_records()
    output = "\n".join(
        [_shown("catalog and probes", catalog), _shown("admin", admin), _shown("token", token)]
    )
    assert alive, output
    assert (catalog.returncode, admin.returncode, token.returncode) == (0, 0, 0), output
    unhandled = [record for record in records if record.get("event") == "unhandled_error"]
    assert not unhandled, unhandled
    left = {name for name in LEFTOVERS if (REPO_ROOT / name).exists()} - present
    assert not left, f"the CLI wrote {sorted(left)} into the checkout"


# -- the document itself ------------------------------------------------------------------------


async def test_served_document_is_the_packaged_file(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=(SecretStr("k"),), admin_token=SecretStr("adm"))
    # Public: no key needed, even with keys configured.
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == DOCUMENT.read_bytes()


def test_document_is_valid_openapi_3_0() -> None:
    document = json.loads(DOCUMENT.read_bytes())
    assert isinstance(document, dict)
    assert str(document.get("openapi", "")).startswith("3.0."), document.get("openapi")
    assert {"title", "version"} <= set(document["info"])
    assert document["paths"]
    # The official OpenAPI 3.0 meta-schema, as Schemathesis ships it (the project has no other
    # OpenAPI validator); an internal module, so it is looked up only here.
    from schemathesis.specs.openapi.definitions import (  # noqa: PLC0415
        OPENAPI_30_VALIDATOR,
    )

    errors = [str(error) for error in OPENAPI_30_VALIDATOR.iter_errors(document)]
    assert not errors, "\n".join(errors)
    # The meta-schema does not follow references: every one must name something that exists.
    dangling = [ref for ref in _refs(document) if _resolve(document, ref) is None]
    assert not dangling, dangling


# What a generated client can name a member after as it is; other values need x-enum-varnames.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")


def test_document_enums_give_generated_clients_one_named_class_each() -> None:
    document = json.loads(DOCUMENT.read_bytes())
    enums = _enums(document)
    assert enums
    problems = []
    for where, schema in enums:
        values = schema["enum"]
        # Nullable is said beside an allOf of the enum: null inside it makes generators emit
        # one class per member type (openapi-python-client: three identical Grade classes).
        if None in values:
            problems.append(f"{where}: null inside enum")
        names = schema.get("x-enum-varnames")
        if names is None:
            if any(isinstance(value, str) and not IDENTIFIER.match(value) for value in values):
                problems.append(f"{where}: {values} needs x-enum-varnames")
            continue
        if len(names) != len(values) or len(set(names)) != len(names):
            problems.append(f"{where}: x-enum-varnames {names} do not name {values} one each")
        problems += [f"{where}: member name {name!r}" for name in names if not CONSTANT.match(name)]
    # One enum used in several places is one component (one class), referenced from each.
    seen: dict[tuple[object, ...], str] = {}
    for where, schema in enums:
        values = tuple(schema["enum"])
        if len(values) > 1 and values in seen:
            problems.append(f"{where} repeats {seen[values]}: make it a component")
        seen.setdefault(values, where)
    # OpenAPI 3.0 ignores every sibling of $ref, nullable included.
    problems += [f"{where}: a sibling of $ref" for where in _refs_with_siblings(document)]
    assert problems == []
    product = document["components"]["schemas"]["Product"]["properties"]
    for name, enum in (("grade", "Grade"), ("form_factor", "FormFactor")):
        assert product[name]["nullable"] is True
        assert product[name]["allOf"] == [{"$ref": f"#/components/schemas/{enum}"}]


def _objects(node: object, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object under ``node``, ``node`` included, with a JSON pointer to it."""
    if isinstance(node, dict):
        yield where, node
        items: Iterable[tuple[object, object]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield from _objects(value, f"{where}/{key}")


def _enums(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (where, node) for where, node in _objects(document) if isinstance(node.get("enum"), list)
    ]


def _refs_with_siblings(document: dict[str, Any]) -> list[str]:
    return [where for where, node in _objects(document) if "$ref" in node and len(node) > 1]


def _refs(document: dict[str, Any]) -> list[str]:
    return [node["$ref"] for _, node in _objects(document) if isinstance(node.get("$ref"), str)]


def _resolve(document: dict[str, Any], ref: str) -> object:
    if not ref.startswith("#/"):
        return None
    node: object = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


async def test_document_and_router_list_the_same_operations(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != hdrs.METH_HEAD
        and route.resource is not None
        and route.resource.name != UNMATCHED
    }
    document = json.loads(DOCUMENT.read_bytes())
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }
    assert registered - documented == set(), "routes missing from the document"
    assert documented - registered == set(), "documented operations the router lacks"
