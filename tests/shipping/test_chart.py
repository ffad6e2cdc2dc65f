"""The Helm chart (helm/product-proxy): lint, schema, renders, validation, security and alerts.

Tools come from ``.tools`` or PATH (``scripts/tools-helm.sh`` puts helm in ``.tools/bin``,
``scripts/tools-venv.sh`` the locked kubernetes-validate and checkov in ``.tools/venv``). A
missing tool skips its tests locally and fails them in CI (``CI=true``); promtool is optional
(its checks run when it is there).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from proxy import __version__
from proxy.settings import Settings
from tests.support.net import free_port, http_status
from tests.support.processes import ProxyProcess
from tests.support.settings import clean_env
from tests.support.tools import tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "product-proxy"
HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "values-everything.yaml"
REDIS_URL = HERE / "values-redis-url.yaml"
SENTINEL_TLS = HERE / "values-sentinel-tls.yaml"
REDIS_CLUSTER = HERE / "values-redis-cluster.yaml"
WITH_REDIS = CHART / "examples" / "values-with-redis.yaml"
WITH_SENTINEL = CHART / "examples" / "values-with-redis-sentinel.yaml"
# Release name of each shared render (fixture ``renders``).
RELEASES = {
    "default": "pp",
    "everything": "everything",
    "redis-url": "cache",
    "sentinel-tls": "tls",
    "redis-cluster": "shards",
    "example-redis": "catalog",
    "example-sentinel": "catalog",
    "management": "ops",
}
# A management port apart, API keys named in the chart's Secret, traces to a collector, and the
# policy and monitor that follow the port. Written to a file by the ``management_values``
# fixture.
MANAGEMENT_PORT = 9091
MANAGEMENT_VALUES = f"""
managementPort: {MANAGEMENT_PORT}
secret:
  clientId: example-client-id
  clientSecret: example-client-secret
  apiKeys:
    - billing:key-for-billing
    - provisioning:key-for-provisioning
serviceMonitor:
  enabled: true
networkPolicy:
  enabled: true
  egress:
    extra:
      - to:
          - namespaceSelector:
              matchLabels:
                kubernetes.io/metadata.name: monitoring
        ports:
          - port: 4318
            protocol: TCP
otel:
  enabled: true
  endpoint: http://otel-collector.monitoring.svc:4318
  extraEnv:
    OTEL_RESOURCE_ATTRIBUTES: deployment.environment=production
"""
PROJECT_URL = "https://github.com/onence-product-proxy/onence-product-proxy"
RUNBOOK = f"{PROJECT_URL}/blob/main/docs/runbook.md"
SECRETS_DIR = "/var/run/secrets/product-proxy"
# Required API keys: a file of their own, which the service re-reads (PROXY_API_KEYS_FILE).
API_KEYS_FILE = "api-keys"
REDIS_CA_DIR = "/etc/product-proxy/redis-ca"
BUILT_IN_ALERTS = (
    "ProductProxyCatalogStale",
    "ProductProxyUpstreamErrors",
    "ProductProxyRedisDown",
    "ProductProxyApiKeysFileUnusable",
    "ProductProxyHighErrorRatio",
)
NAMESPACE = "proxy"
MONITORING_API = "monitoring.coreos.com/v1"
MONITORING_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
# kubernetes-validate ships schemas for 1.25 to 1.37; the chart's kubeVersion is >=1.25.
KUBE_VERSIONS = ("1.25.0", "1.30.0", "1.33.0")
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)

Manifest = dict[str, Any]
# How the dashboard turns "no series yet" into 0 (a labelled counter before its first count).
NO_DATA_IS_0 = " or on() vector(0)"


def run(args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell, capturing text output."""
    return subprocess.run(  # noqa: S603 - fixed tool paths, arguments from this file
        args, capture_output=True, text=True, timeout=timeout, check=False
    )


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm against the chart."""
    return run([tool("helm"), *args])


def template_args(
    release: str,
    values: tuple[Path, ...] = (),
    sets: tuple[str, ...] = (),
    *,
    monitoring_api: bool = False,
) -> list[str]:
    """Arguments of ``helm template`` for one render."""
    args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.30.0"]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    if monitoring_api:
        args += ["--api-versions", MONITORING_API]
    return args


def render_text(
    release: str,
    values: tuple[Path, ...] = (),
    sets: tuple[str, ...] = (),
    *,
    monitoring_api: bool = False,
) -> str:
    """Render the chart; the test fails with helm's message if it cannot."""
    result = helm(*template_args(release, values, sets, monitoring_api=monitoring_api))
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(
    release: str,
    values: tuple[Path, ...] = (),
    sets: tuple[str, ...] = (),
    *,
    monitoring_api: bool = False,
) -> list[Manifest]:
    """Render the chart into its objects."""
    text = render_text(release, values, sets, monitoring_api=monitoring_api)
    return [cast("Manifest", doc) for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def deployment(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment")


def pod_spec(objects: list[Manifest]) -> dict[str, Any]:
    return cast("dict[str, Any]", deployment(objects)["spec"]["template"]["spec"])


def container(objects: list[Manifest]) -> dict[str, Any]:
    """The proxy container (sidecars, if any, come after it)."""
    containers = pod_spec(objects)["containers"]
    assert containers[0]["name"] == "proxy"
    assert [c["name"] for c in containers].count("proxy") == 1
    return cast("dict[str, Any]", containers[0])


def env(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(objects).get("env", [])}


def volumes(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec(objects)["volumes"]}


def mounts(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The proxy container's volume mounts by mount path."""
    return {mount["mountPath"]: mount for mount in container(objects)["volumeMounts"]}


def projected_refs(volume: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """File name to {name, key[, optional]} of a projected volume of Secret items."""
    refs: dict[str, dict[str, Any]] = {}
    for source in volume["projected"]["sources"]:
        secret = source["secret"]
        for item in secret["items"]:
            assert item["path"] not in refs, item
            refs[item["path"]] = {"name": secret["name"], "key": item["key"]}
            if secret.get("optional"):
                refs[item["path"]]["optional"] = True
    return refs


def secret_refs(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Each secret variable the proxy reads, as {name, key[, optional]} of its Secret.

    From the files of the secrets volume (secret.mountAsFiles, each named after its variable,
    but for required API keys: the file ``api-keys`` that PROXY_API_KEYS_FILE names, listed
    here as PROXY_API_KEYS), else from the env entries' secretKeyRefs: the same shape either
    way, so a test can compare the two modes. In file mode no variable comes from a
    secretKeyRef.
    """
    from_env = {
        name: cast("dict[str, Any]", item["valueFrom"]["secretKeyRef"])
        for name, item in env(objects).items()
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    secrets = volumes(objects).get("secrets")
    if secrets is None:
        assert SECRETS_DIR not in mounts(objects)
        assert "PROXY_SECRETS_DIR" not in env(objects)
        return from_env
    assert not from_env, from_env
    assert secrets["projected"]["defaultMode"] == 0o440
    assert mounts(objects)[SECRETS_DIR] == {
        "name": "secrets",
        "mountPath": SECRETS_DIR,
        "readOnly": True,
    }
    assert env(objects)["PROXY_SECRETS_DIR"] == {"name": "PROXY_SECRETS_DIR", "value": SECRETS_DIR}
    refs = projected_refs(secrets)
    if API_KEYS_FILE in refs:
        # Re-read by the service, never also read once as PROXY_API_KEYS; and never optional
        # (the service refuses a PROXY_API_KEYS_FILE that names no file).
        assert "PROXY_API_KEYS" not in refs
        assert "optional" not in refs[API_KEYS_FILE]
        assert env(objects)["PROXY_API_KEYS_FILE"] == {
            "name": "PROXY_API_KEYS_FILE",
            "value": f"{SECRETS_DIR}/{API_KEYS_FILE}",
        }
        refs["PROXY_API_KEYS"] = refs.pop(API_KEYS_FILE)
    else:
        assert "PROXY_API_KEYS_FILE" not in env(objects)
    return refs


def helm_test_pod(objects: list[Manifest]) -> Manifest:
    """The helm test pod."""
    pods = [obj for obj in objects if obj["kind"] == "Pod"]
    assert len(pods) == 1
    assert pods[0]["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return pods[0]


def helm_test_container(objects: list[Manifest]) -> dict[str, Any]:
    (only,) = helm_test_pod(objects)["spec"]["containers"]
    return cast("dict[str, Any]", only)


def settings(objects: list[Manifest]) -> dict[str, str]:
    """The ConfigMap the container reads all of (envFrom)."""
    names = [ref["configMapRef"]["name"] for ref in container(objects)["envFrom"]]
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in names]
    assert len(maps) == 1
    return cast("dict[str, str]", maps[0]["data"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def management_ports(objects: list[Manifest]) -> list[int]:
    """The port numbers of the proxy container's ``management`` ports (none or one)."""
    return [p["containerPort"] for p in container(objects)["ports"] if p["name"] == "management"]


def readme_metric_names() -> set[str]:
    """Metric names from the project README's metrics table (``| `product_proxy_...` |``)."""
    names: set[str] = set()
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `product_proxy_"):
            continue
        first_cell = line.split("|")[1]
        for token in re.findall(r"`([a-z_]+)`", first_cell):
            names.add(token if token.startswith("product_proxy_") else f"product_proxy{token}")
    assert names, "no metrics table in README.md"
    return names


def metric_names(expression: str) -> set[str]:
    """Metric names a PromQL expression uses, histogram series reduced to the histogram."""
    found = set(re.findall(r"\bproduct_proxy_[a-z_]+", expression))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in found}


# Renders shared by the tests of this module ---------------------------------------------------


@pytest.fixture(scope="module")
def default_objects() -> list[Manifest]:
    return render("pp")


@pytest.fixture(scope="module")
def everything_objects() -> list[Manifest]:
    return render("everything", (EVERYTHING,), monitoring_api=True)


@pytest.fixture(scope="module")
def redis_url_objects() -> list[Manifest]:
    return render("cache", (REDIS_URL,))


@pytest.fixture(scope="module")
def sentinel_tls_objects() -> list[Manifest]:
    return render("tls", (SENTINEL_TLS,))


@pytest.fixture(scope="module")
def redis_cluster_objects() -> list[Manifest]:
    return render("shards", (REDIS_CLUSTER,))


@pytest.fixture(scope="module")
def with_redis_objects() -> list[Manifest]:
    return render(RELEASES["example-redis"], (WITH_REDIS,))


@pytest.fixture(scope="module")
def with_sentinel_objects() -> list[Manifest]:
    return render(RELEASES["example-sentinel"], (WITH_SENTINEL,))


@pytest.fixture(scope="module")
def management_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "values-management.yaml"
    path.write_text(MANAGEMENT_VALUES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def management_objects(management_values: Path) -> list[Manifest]:
    return render(RELEASES["management"], (management_values,), monitoring_api=True)


@pytest.fixture(scope="module")
def renders(
    *,
    default_objects: list[Manifest],
    everything_objects: list[Manifest],
    redis_url_objects: list[Manifest],
    sentinel_tls_objects: list[Manifest],
    redis_cluster_objects: list[Manifest],
    with_redis_objects: list[Manifest],
    with_sentinel_objects: list[Manifest],
    management_objects: list[Manifest],
) -> dict[str, list[Manifest]]:
    return {
        "default": default_objects,
        "everything": everything_objects,
        "redis-url": redis_url_objects,
        "sentinel-tls": sentinel_tls_objects,
        "redis-cluster": redis_cluster_objects,
        "example-redis": with_redis_objects,
        "example-sentinel": with_sentinel_objects,
        "management": management_objects,
    }


@pytest.fixture(scope="module")
def checkov_report(
    tmp_path_factory: pytest.TempPathFactory, renders: dict[str, list[Manifest]]
) -> dict[str, Any]:
    """One checkov run (it is slow) over every render, with the chart's documented skips.

    Its JSON report: ``results`` holds passed, failed and skipped checks, each naming its
    resource (``Kind.namespace.name``).
    """
    checkov = tool("checkov")
    directory = tmp_path_factory.mktemp("checkov")
    for name, objects in renders.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    args = [checkov, "--directory", str(directory), "--framework", "kubernetes"]
    args += ["--config-file", str(CHART / ".checkov.yaml"), "--output", "json"]
    result = run(args, timeout=180)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return cast("dict[str, Any]", report)


# helm lint and the values schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        (),
        (EVERYTHING,),
        (REDIS_URL,),
        (SENTINEL_TLS,),
        (REDIS_CLUSTER,),
        (WITH_REDIS,),
        (WITH_SENTINEL,),
    ],
    ids=[
        "default",
        "everything",
        "redis-url",
        "sentinel-tls",
        "redis-cluster",
        "example-redis",
        "example-sentinel",
    ],
)
def test_lint_strict_passes(values: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("replicaCuont=3", "replicaCuont"),
        ("autoscaling.enabeld=true", "enabeld"),
        ("config.cacheTTL=60", "cacheTTL"),
        ("networkPolicy.egress.dsn.enabled=false", "dsn"),
        ("prometheusRule.rules.redisDown.fro=1m", "fro"),
        ("networkPolicy.egress.webhook.ports={443}", "webhook"),
        ("config.historyVersion=10", "historyVersion"),
    ],
)
def test_a_typo_in_values_is_rejected_by_name(assignment: str, named: str) -> None:
    result = helm(*template_args("typo", sets=(assignment,)))
    assert result.returncode != 0
    assert f"Additional property {named} is not allowed" in result.stderr, result.stderr


def test_lint_strict_passes_with_a_management_port(management_values: Path) -> None:
    result = helm(
        "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(management_values)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_lint_rejects_a_typo_too(tmp_path: Path) -> None:
    values = tmp_path / "typo.yaml"
    values.write_text("autoscaling:\n  enabeld: true\n", encoding="utf-8")
    result = helm("lint", "--strict", str(CHART), "--values", str(values))
    assert result.returncode != 0
    assert "enabeld" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values_yaml", "named"),
    [
        ("image:\n  tag: 1.2\n", "image.tag"),  # a float, not the string "1.2"
        ("redis:\n  mode: standalone\n", "redis.mode"),
        ("redis:\n  tls: 'yes'\n", "redis.tls"),
        ("redis:\n  cluster:\n    nodes: [node-without-port]\n", "redis.cluster.nodes.0"),
        ("redis:\n  cluster:\n    nodes: ['a:6379,b:6379']\n", "redis.cluster.nodes.0"),
        ("config:\n  cacheTtl: 0\n", "config.cacheTtl"),
        ("config:\n  logLevel: verbose\n", "config.logLevel"),
        ("replicaCount: -1\n", "replicaCount"),
        ("serviceMonitor:\n  interval: 30 seconds\n", "serviceMonitor.interval"),
        ("redis:\n  sentinel:\n    hosts: [sentinel-without-port]\n", "redis.sentinel.hosts.0"),
        ("secret:\n  apiKeys: ['a,b']\n", "secret.apiKeys.0"),
        ("requireApiKeys: 'yes'\n", "requireApiKeys"),
        ("networkPolicy:\n  egress:\n    redis:\n      ports: [0]\n", "ports.0"),
        ("extraVolumes:\n  - emptyDir: {}\n", "extraVolumes.0"),
        ("extraVolumeMounts:\n  - name: x\n", "extraVolumeMounts.0"),
        ("sidecars:\n  - name: x\n", "sidecars.0"),
        ("sidecars: {name: x, image: y}\n", "sidecars"),
        ("extraEnvFrom:\n  - not-an-object\n", "extraEnvFrom.0"),
        ("managementPort: 0\n", "managementPort"),
        ("managementPort: '9090'\n", "managementPort"),
        ("otel:\n  sampler: sometimes\n", "otel.sampler"),
        ("otel:\n  samplerArg: 0.5\n", "otel.samplerArg"),
        ("otel:\n  samplerArg: '1.5'\n", "otel.samplerArg"),
        ("otel:\n  endpoint: collector:4318\n", "otel.endpoint"),
        ("otel:\n  extraEnv:\n    PROXY_PORT: '1'\n", "otel.extraEnv"),
        ("otel:\n  extraEnv:\n    OTEL_SERVICE_NAME: other\n", "otel.extraEnv"),
        ("otel:\n  extraEnv:\n    OTEL_SERVICE_VERSION: 2\n", "OTEL_SERVICE_VERSION"),
        ("secret:\n  webhookUrls: https://hooks.example.com/x\n", "secret.webhookUrls"),
        ("secret:\n  webhookUrls: [hooks.example.com/x]\n", "secret.webhookUrls.0"),
        ("secret:\n  webhookUrls: ['ftp://hooks.example.com/x']\n", "secret.webhookUrls.0"),
        ("secret:\n  webhookUrls: ['https://a.example/x,https://b.example/y']\n", "webhookUrls.0"),
        ("secret:\n  webhookUrls: ['https://hooks.example.com/x#part']\n", "webhookUrls.0"),
        ("secret:\n  webhookUrls: ['https://hooks.example.com/a b']\n", "webhookUrls.0"),
        ("secret:\n  webhookUrls: ['https:///x']\n", "secret.webhookUrls.0"),
        ("secret:\n  webhookUrls: ['https://a.example/x', 'https://a.example/x']\n", "webhookUrls"),
        ("secret:\n  webhookSecret: [a, b]\n", "secret.webhookSecret"),
        ("existingSecret:\n  keys:\n    webhookUrls: 'hook urls'\n", "webhookUrls"),
        ("networkPolicy:\n  egress:\n    webhooks:\n      ports: [70000]\n", "ports.0"),
        ("networkPolicy:\n  egress:\n    webhooks:\n      to: {}\n", "webhooks.to"),
    ],
)
def test_wrong_types_and_values_are_rejected(tmp_path: Path, values_yaml: str, named: str) -> None:
    values = tmp_path / "bad.yaml"
    values.write_text(values_yaml, encoding="utf-8")
    result = helm(*template_args("bad", (values,)))
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("config.lockTimeout=10",), "config.lockTimeout (10) must be longer"),
        (("redis.mode=url",), "secret.redisUrl is empty"),
        (("redis.mode=sentinel",), "redis.sentinel.hosts is empty"),
        (("secret.redisUrl=redis://redis:6379",), "set redis.mode=url"),
        (("redis.sentinel.hosts={s:26379}",), "set redis.mode=sentinel"),
        (("redis.mode=cluster",), "redis.cluster.nodes is empty"),
        (("redis.cluster.nodes={node-0:6379}",), "set redis.mode=cluster"),
        (
            ("redis.mode=sentinel", "redis.sentinel.hosts={s:26379}", "redis.tls=true"),
            "redis.tls is for redis.mode=cluster, not sentinel",
        ),
        (
            ("redis.mode=url", "secret.redisUrl=redis://r:6379", "secret.redisPassword=pw"),
            "secret.redisPassword is for redis.mode=sentinel or cluster",
        ),
        (
            (
                "redis.mode=cluster",
                "redis.cluster.nodes={n:6379}",
                "secret.redisSentinelPassword=x",
            ),
            "secret.redisSentinelPassword is for redis.mode=sentinel",
        ),
        (
            ("autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=2"),
            "must not exceed",
        ),
        (("requireApiKeys=true",), "requireApiKeys is true but secret.apiKeys is empty"),
        (
            ("requireApiKeys=true", "existingSecret.name=creds", "existingSecret.keys.apiKeys="),
            "requireApiKeys is true but existingSecret.keys.apiKeys is empty",
        ),
        (
            ("requireApiKeys=false", "secret.apiKeys={key-a}"),
            "requireApiKeys is false but secret.apiKeys is set",
        ),
        (
            ("secret.webhookUrls={https://hooks.example.com/1nce}",),
            "secret.webhookUrls is set but secret.webhookSecret is empty",
        ),
    ],
)
def test_contradicting_values_fail_with_one_clear_line(sets: tuple[str, ...], message: str) -> None:
    result = helm(*template_args("bad", sets=sets))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_schema_is_draft_07_and_closed_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_objects: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")
            return
        if not isinstance(node, dict):
            return
        if node.get("type") == "object":
            assert "additionalProperties" in node, f"{where} does not say additionalProperties"
            if node["additionalProperties"] is True:
                open_objects.append(where)
        for key, value in node.items():
            walk(value, f"{where}/{key}")

    walk(schema, "#")
    # Kubernetes objects passed through (affinity, HPA behavior...) are the only open ones.
    assert open_objects == ["#/definitions/passthrough"]


def test_readme_lists_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return cast("dict[str, Any]", schema["definitions"][node["$ref"].split("/")[-1]])
        return node

    def leaves(value: object, node: dict[str, Any], prefix: str) -> Iterator[str]:
        # Down to the chart's own keys; a Kubernetes object passed through is one value.
        node = resolve(node)
        if isinstance(value, dict) and value and "properties" in node:
            for key, item in value.items():
                yield from leaves(item, node["properties"][key], f"{prefix}{key}.")
        else:
            yield prefix.rstrip(".")

    missing = [path for path in leaves(values, schema, "") if f"| `{path}` |" not in readme]
    assert not missing, f"not in the values tables of helm/product-proxy/README.md: {missing}"


# Rendering -----------------------------------------------------------------------------------


def test_default_render_has_the_core_objects_only(default_objects: list[Manifest]) -> None:
    # No credentials given: no Secret (the pods say what is missing, NOTES.txt warns). Two
    # replicas: a PodDisruptionBudget. The Pod is the helm test.
    assert kinds(default_objects) == [
        "ConfigMap",
        "Deployment",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def test_everything_render_has_every_object(everything_objects: list[Manifest]) -> None:
    assert kinds(everything_objects) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_monitoring_objects_need_the_api_or_the_override() -> None:
    without = render("everything", (EVERYTHING,))
    assert not MONITORING_KINDS & set(kinds(without))
    # The dashboard is a plain ConfigMap: it needs no CRD.
    assert any(obj["metadata"]["name"].endswith("-dashboard") for obj in without)
    with_api = render("everything", (EVERYTHING,), monitoring_api=True)
    assert set(kinds(with_api)) >= MONITORING_KINDS
    forced = render(
        "everything",
        (EVERYTHING,),
        ("serviceMonitor.forceEnable=true", "prometheusRule.forceEnable=true"),
    )
    assert set(kinds(forced)) >= MONITORING_KINDS
    disabled = render(
        "pp",
        sets=("serviceMonitor.forceEnable=true", "prometheusRule.forceEnable=true"),
        monitoring_api=True,
    )
    assert not MONITORING_KINDS & set(kinds(disabled))


def test_every_object_has_the_recommended_labels_and_the_release_namespace(
    renders: dict[str, list[Manifest]],
) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    everything = yaml.safe_load(EVERYTHING.read_text(encoding="utf-8"))
    image_tags = {"everything": everything["image"]["tag"]}
    for name, objects in renders.items():
        release = RELEASES[name]
        for obj in objects:
            where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
            labels = obj["metadata"]["labels"]
            for label in RECOMMENDED_LABELS:
                assert labels.get(label), f"{where} lacks {label}"
            assert labels["app.kubernetes.io/name"] == "product-proxy", where
            assert labels["app.kubernetes.io/instance"] == release, where
            # The version of what runs: the image tag when one is set, else the appVersion.
            assert labels["app.kubernetes.io/version"] == image_tags.get(
                name, chart["appVersion"]
            ), where
            assert labels["app.kubernetes.io/part-of"] == "1nce-product-proxy", where
            assert labels["app.kubernetes.io/managed-by"] == "Helm", where
            assert labels["helm.sh/chart"] == f"product-proxy-{chart['version']}", where
            assert obj["metadata"]["namespace"] == NAMESPACE, where
        pod_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels.get(label) for label in RECOMMENDED_LABELS)


def test_service_and_deployment_select_the_pods(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        pod_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment(objects)["spec"]["selector"]["matchLabels"], pod_labels)
        service = one(objects, "Service")
        assert selects(service["spec"]["selector"], pod_labels)
        management = [
            {"name": "management", "port": port, "targetPort": "management", "protocol": "TCP"}
            for port in management_ports(objects)
        ]
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
            *management,
        ]


# The pod -------------------------------------------------------------------------------------


def assert_restricted(spec: dict[str, Any], one_container: dict[str, Any]) -> None:
    """Pod Security Standards "restricted", user 10001, read-only root, no token, no links."""
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 10001
    # The secret files (mode 0440) belong to this group.
    assert pod_security["fsGroup"] == 10001
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = one_container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_and_container_are_restricted(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        spec = pod_spec(objects)
        assert_restricted(spec, container(objects))
        # The read-only root still gets a writable /tmp.
        tmp = mounts(objects)["/tmp"]  # noqa: S108 - a mount path, not a file
        assert "emptyDir" in volumes(objects)[tmp["name"]]
        account = [o for o in objects if o["kind"] == "ServiceAccount"]
        assert account[0]["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == account[0]["metadata"]["name"]
        # The helm test pod is as restricted, with the same contexts.
        test_spec = helm_test_pod(objects)["spec"]
        assert_restricted(test_spec, helm_test_container(objects))
        assert test_spec["securityContext"] == spec["securityContext"]
        assert (
            helm_test_container(objects)["securityContext"] == container(objects)["securityContext"]
        )


def test_probes_ask_the_service_on_its_port(renders: dict[str, list[Manifest]]) -> None:
    for name, objects in renders.items():
        proxy = container(objects)
        management = [
            {"name": "management", "containerPort": port, "protocol": "TCP"}
            for port in management_ports(objects)
        ]
        assert proxy["ports"] == [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            *management,
        ]
        assert settings(objects)["PROXY_PORT"] == "8080"
        # The probes are answered on the management port when there is one, and only there.
        port = "management" if management else "http"
        assert settings(objects).get("PROXY_MANAGEMENT_PORT") == (
            str(MANAGEMENT_PORT) if management else None
        ), name
        paths = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
            "startupProbe": "/healthz",
        }
        for probe, path in paths.items():
            assert proxy[probe]["httpGet"] == {"path": path, "port": port}, (name, probe)
    assert management_ports(renders["management"]) == [MANAGEMENT_PORT]
    assert all(
        management_ports(objects) == [] for n, objects in renders.items() if n != "management"
    )


def test_grace_period_covers_the_shutdown(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        delay = float(settings(objects)["PROXY_SHUTDOWN_DELAY"])
        grace = float(settings(objects)["PROXY_SHUTDOWN_GRACE"])
        period = pod_spec(objects)["terminationGracePeriodSeconds"]
        assert period >= delay + grace + 5
        # The delay is the service's own (no preStop hook, no exec in the image).
        assert "lifecycle" not in container(objects)
    everything = renders["everything"]
    assert pod_spec(everything)["terminationGracePeriodSeconds"] == 10 + 25 + 5


def test_resources_are_set(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        resources = container(objects)["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_replicas_spread_over_zones_and_nodes(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        pod_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
        constraints = pod_spec(objects)["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in constraints:
            assert selects(constraint["labelSelector"]["matchLabels"], pod_labels)


def test_pods_roll_when_settings_change() -> None:
    def annotations(*sets: str) -> dict[str, str]:
        objects = render("cache", (REDIS_URL,), sets)
        return cast(
            "dict[str, str]", deployment(objects)["spec"]["template"]["metadata"]["annotations"]
        )

    base = annotations()
    secret_changed = annotations("secret.clientSecret=another")
    config_changed = annotations("config.cacheTtl=60")
    assert secret_changed["checksum/secret"] != base["checksum/secret"]
    assert secret_changed["checksum/config"] == base["checksum/config"]
    assert config_changed["checksum/config"] != base["checksum/config"]


# Secrets and Redis ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_files", [True, False], ids=["files", "env"])
def test_chart_secret_holds_the_set_values_and_the_pods_read_them(as_files: bool) -> None:  # noqa: FBT001
    objects = render("cache", (REDIS_URL,), (f"secret.mountAsFiles={str(as_files).lower()}",))
    secret = one(objects, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "client-id": "example-client-id",
        "client-secret": "example-client-secret",
        "api-keys": "key-for-billing,key-for-provisioning",
        "admin-token": "example-admin-token",
        "redis-url": "redis://:example-password@redis-master.data.svc:6379/0",
        # The list joined as the service splits it.
        "webhook-urls": (
            "https://hooks.example.com/1nce/catalog?token=example-hook-token,"
            "http://catalog-sync.integrations.svc:8080/hooks/1nce"
        ),
        "webhook-secret": "example-webhook-signing-key",
    }
    expected = {
        "PROXY_CLIENT_ID": "client-id",
        "PROXY_CLIENT_SECRET": "client-secret",
        "PROXY_API_KEYS": "api-keys",
        "PROXY_ADMIN_TOKEN": "admin-token",
        "PROXY_REDIS_URL": "redis-url",
        "PROXY_WEBHOOK_URLS": "webhook-urls",
        "PROXY_WEBHOOK_SECRET": "webhook-secret",
    }
    refs = secret_refs(objects)
    assert refs == {
        name: {"name": secret["metadata"]["name"], "key": key} for name, key in expected.items()
    }
    # Files when asked (the default), variables otherwise; never both.
    assert ("secrets" in volumes(objects)) is as_files
    secret_env = {"PROXY_SECRETS_DIR", "PROXY_API_KEYS_FILE"} if as_files else set(expected)
    assert set(env(objects)) == secret_env
    # Secrets never sit in the ConfigMap.
    assert not set(expected) & set(settings(objects))
    assert "PROXY_SECRETS_DIR" not in settings(objects)
    assert "PROXY_REDIS_SENTINELS" not in settings(objects)


def test_secret_files_are_named_after_the_variables_but_the_api_keys(
    redis_url_objects: list[Manifest],
) -> None:
    # The default: one projected volume, every item a required file named like its variable;
    # the API keys are the file the service re-reads, not PROXY_API_KEYS (PROXY_SECRETS_DIR
    # would read that one too, once).
    (source,) = volumes(redis_url_objects)["secrets"]["projected"]["sources"]
    assert "optional" not in source["secret"]
    assert [item["path"] for item in source["secret"]["items"]] == [
        "PROXY_CLIENT_ID",
        "PROXY_CLIENT_SECRET",
        API_KEYS_FILE,
        "PROXY_ADMIN_TOKEN",
        "PROXY_REDIS_URL",
        "PROXY_WEBHOOK_URLS",
        "PROXY_WEBHOOK_SECRET",
    ]
    assert env(redis_url_objects)["PROXY_API_KEYS_FILE"]["value"] == f"{SECRETS_DIR}/api-keys"
    # The whole volume is mounted, never one file with subPath: Kubernetes updates the files
    # of a mounted Secret in place, but never a subPath copy, so the keys could not rotate.
    assert not any("subPath" in mount for mount in mounts(redis_url_objects).values())
    # Nothing to read (no credentials): no volume, no PROXY_SECRETS_DIR.
    assert secret_refs(render("pp")) == {}


@pytest.mark.parametrize(
    "sets",
    [
        ("existingSecret.name=creds",),
        ("existingSecret.name=creds", "requireApiKeys=true"),
        ("existingSecret.name=creds", "redis.mode=url"),
        ("existingSecret.name=creds", "redis.mode=sentinel", "redis.sentinel.hosts={s:26379}"),
        ("existingSecret.name=creds", "redis.mode=cluster", "redis.cluster.nodes={n:6379}"),
        ("existingSecret.name=creds", "existingSecret.keys.adminToken="),
        ("secret.clientId=id", "secret.clientSecret=x", "secret.apiKeys={a,b}"),
        ("redis.mode=sentinel", "redis.sentinel.hosts={s:26379}", "secret.redisPassword=pw"),
        ("secret.webhookUrls={https://hooks.example.com/a}", "secret.webhookSecret=key"),
        ("existingSecret.name=creds", "existingSecret.keys.webhookSecret="),
    ],
)
def test_files_and_variables_read_the_same_references(sets: tuple[str, ...]) -> None:
    files = secret_refs(render("same", sets=sets))
    variables = secret_refs(render("same", sets=(*sets, "secret.mountAsFiles=false")))
    assert files == variables
    assert files


def test_optional_and_required_files_are_separate_sources() -> None:
    # A missing key in an optional source is skipped; in a required one the pod does not start.
    objects = render("keys", sets=("existingSecret.name=creds", "redis.mode=url"))
    required, optional = volumes(objects)["secrets"]["projected"]["sources"]
    assert "optional" not in required["secret"]
    assert [item["path"] for item in required["secret"]["items"]] == [
        "PROXY_CLIENT_ID",
        "PROXY_CLIENT_SECRET",
        "PROXY_REDIS_URL",
    ]
    assert optional["secret"]["optional"] is True
    assert [item["path"] for item in optional["secret"]["items"]] == [
        "PROXY_API_KEYS",
        "PROXY_ADMIN_TOKEN",
        "PROXY_WEBHOOK_URLS",
        "PROXY_WEBHOOK_SECRET",
    ]
    # With required API keys their file moves to the required source.
    required_keys = render("keys", sets=("existingSecret.name=creds", "requireApiKeys=true"))
    assert secret_refs(required_keys)["PROXY_API_KEYS"] == {"name": "creds", "key": "api-keys"}
    # Only optional items: one source, optional as a whole.
    objects = render(
        "keys",
        sets=(
            "existingSecret.name=creds",
            "existingSecret.keys.clientId=",
            "existingSecret.keys.clientSecret=",
        ),
    )
    (source,) = volumes(objects)["secrets"]["projected"]["sources"]
    assert source["secret"]["optional"] is True
    assert [item["path"] for item in source["secret"]["items"]] == [
        "PROXY_API_KEYS",
        "PROXY_ADMIN_TOKEN",
        "PROXY_WEBHOOK_URLS",
        "PROXY_WEBHOOK_SECRET",
    ]


def test_existing_secret_is_referenced_and_no_secret_rendered(
    everything_objects: list[Manifest],
) -> None:
    assert "Secret" not in kinds(everything_objects)
    refs = secret_refs(everything_objects)
    assert refs == {
        "PROXY_CLIENT_ID": {"name": "product-proxy-credentials", "key": "onence-client-id"},
        "PROXY_CLIENT_SECRET": {"name": "product-proxy-credentials", "key": "onence-client-secret"},
        "PROXY_API_KEYS": {
            "name": "product-proxy-credentials",
            "key": "api-keys",
            "optional": True,
        },
        # Sentinel mode: the master's and the Sentinels' passwords, not a URL;
        # adminToken's key is "" in the values, so PROXY_ADMIN_TOKEN is not set.
        "PROXY_REDIS_PASSWORD": {
            "name": "product-proxy-credentials",
            "key": "redis-password",
            "optional": True,
        },
        "PROXY_REDIS_SENTINEL_PASSWORD": {
            "name": "product-proxy-credentials",
            "key": "sentinel-password",
            "optional": True,
        },
        "PROXY_WEBHOOK_URLS": {
            "name": "product-proxy-credentials",
            "key": "hook-urls",
            "optional": True,
        },
        "PROXY_WEBHOOK_SECRET": {
            "name": "product-proxy-credentials",
            "key": "hook-signing-key",
            "optional": True,
        },
    }
    assert env(everything_objects)["TZ"] == {"name": "TZ", "value": "UTC"}
    annotations = deployment(everything_objects)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    assert "checksum/config" in annotations


def api_keys_ref(*sets: str) -> dict[str, Any]:
    """The Secret reference of PROXY_API_KEYS in a render with these --set assignments."""
    return secret_refs(render("keys", sets=sets))["PROXY_API_KEYS"]


def test_api_keys_in_the_values_are_a_required_reference() -> None:
    assert api_keys_ref("secret.apiKeys={key-a,key-b}") == {
        "name": "keys-product-proxy",
        "key": "api-keys",
    }
    # Saying so changes nothing: the chart's Secret always holds them.
    assert api_keys_ref("secret.apiKeys={key-a}", "requireApiKeys=true") == {
        "name": "keys-product-proxy",
        "key": "api-keys",
    }


def test_existing_secret_api_keys_are_required_when_the_switch_is_on() -> None:
    # A pod whose Secret lacks the key does not start (CreateContainerConfigError).
    assert api_keys_ref("existingSecret.name=creds", "requireApiKeys=true") == {
        "name": "creds",
        "key": "api-keys",
    }
    assert api_keys_ref(
        "existingSecret.name=creds",
        "existingSecret.keys.apiKeys=caller-keys",
        "requireApiKeys=true",
    ) == {"name": "creds", "key": "caller-keys"}


@pytest.mark.parametrize("switch", ["requireApiKeys=false", "requireApiKeys=null"])
def test_existing_secret_api_keys_stay_optional_when_the_switch_is_off(switch: str) -> None:
    # Off (or unset, as the chart cannot see into the Secret) keeps the key optional, never
    # dropped: an upgrade must not throw away keys the Secret holds.
    assert api_keys_ref("existingSecret.name=creds", switch) == {
        "name": "creds",
        "key": "api-keys",
        "optional": True,
    }


def test_api_keys_are_left_out_when_no_key_is_named() -> None:
    objects = render("keys", sets=("existingSecret.name=creds", "existingSecret.keys.apiKeys="))
    assert "PROXY_API_KEYS" not in secret_refs(objects)
    assert "PROXY_API_KEYS" not in secret_refs(render("keys", sets=("requireApiKeys=false",)))


def test_sentinel_tls_values_require_the_api_keys(sentinel_tls_objects: list[Manifest]) -> None:
    refs = secret_refs(sentinel_tls_objects)
    assert refs["PROXY_API_KEYS"] == {"name": "proxy-credentials", "key": "api-keys"}
    assert refs["PROXY_ADMIN_TOKEN"]["optional"] is True


def test_existing_secret_in_url_mode_requires_the_url_key() -> None:
    objects = render("cache", sets=("existingSecret.name=creds", "redis.mode=url"))
    assert secret_refs(objects)["PROXY_REDIS_URL"] == {"name": "creds", "key": "redis-url"}
    assert "PROXY_REDIS_PASSWORD" not in secret_refs(objects)


def test_sentinel_mode_sets_the_sentinels(everything_objects: list[Manifest]) -> None:
    config = settings(everything_objects)
    assert config["PROXY_REDIS_SENTINELS"] == ",".join(
        f"redis-node-{n}.redis-headless.data.svc:26379" for n in range(3)
    )
    assert config["PROXY_REDIS_SENTINEL_MASTER"] == "mymaster"
    assert config["PROXY_REDIS_DB"] == "2"
    assert "PROXY_REDIS_URL" not in secret_refs(everything_objects)
    assert "PROXY_REDIS_URL" not in config


def test_sentinel_passwords_from_the_charts_secret() -> None:
    objects = render(
        "cache",
        sets=(
            "redis.mode=sentinel",
            "redis.sentinel.hosts={sentinel-a:26379,sentinel-b:26379}",
            "secret.clientId=id",
            "secret.clientSecret=secret",
            "secret.redisPassword=master-password",
        ),
    )
    secret = one(objects, "Secret")
    assert sorted(secret["data"]) == ["client-id", "client-secret", "redis-password"]
    assert secret_refs(objects)["PROXY_REDIS_PASSWORD"] == {
        "name": secret["metadata"]["name"],
        "key": "redis-password",
    }
    assert "PROXY_REDIS_SENTINEL_PASSWORD" not in secret_refs(objects)
    assert settings(objects)["PROXY_REDIS_SENTINELS"] == "sentinel-a:26379,sentinel-b:26379"


def test_cluster_mode_sets_the_nodes_tls_and_password(
    redis_cluster_objects: list[Manifest],
) -> None:
    config = settings(redis_cluster_objects)
    assert config["PROXY_REDIS_CLUSTER_NODES"] == ",".join(
        f"redis-cluster-{n}.redis-cluster-headless.data.svc:{port}"
        for n, port in enumerate((6379, 6379, 6380))
    )
    assert config["PROXY_REDIS_TLS"] == "true"
    assert not {key for key in config if key.startswith(("PROXY_REDIS_SENTINEL", "PROXY_REDIS_DB"))}
    secret = one(redis_cluster_objects, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["redis-password"] == "example-cluster-password"
    variables = secret_refs(redis_cluster_objects)
    assert variables["PROXY_REDIS_PASSWORD"] == {
        "name": secret["metadata"]["name"],
        "key": "redis-password",
    }
    assert "PROXY_REDIS_URL" not in variables
    assert "PROXY_REDIS_SENTINEL_PASSWORD" not in variables


def test_cluster_mode_without_tls_and_with_an_existing_secret() -> None:
    objects = render(
        "shards",
        sets=(
            "redis.mode=cluster",
            "redis.cluster.nodes={node-0:6379,[fd00::7]:6379}",
            "existingSecret.name=creds",
        ),
    )
    config = settings(objects)
    assert config["PROXY_REDIS_CLUSTER_NODES"] == "node-0:6379,[fd00::7]:6379"
    assert config["PROXY_REDIS_TLS"] == "false"
    variables = secret_refs(objects)
    # The nodes' password is an optional key of the Secret, as with Sentinel.
    assert variables["PROXY_REDIS_PASSWORD"] == {
        "name": "creds",
        "key": "redis-password",
        "optional": True,
    }
    assert "PROXY_REDIS_SENTINEL_PASSWORD" not in variables
    assert "PROXY_REDIS_URL" not in variables


def test_other_modes_set_no_cluster_variables(
    everything_objects: list[Manifest], redis_url_objects: list[Manifest]
) -> None:
    for objects in (everything_objects, redis_url_objects):
        config = settings(objects)
        assert "PROXY_REDIS_CLUSTER_NODES" not in config
        assert "PROXY_REDIS_TLS" not in config


def test_numbers_reach_the_service_as_written(redis_url_objects: list[Manifest]) -> None:
    # YAML numbers are floats to helm; 2592000 must not become "2.592e+06".
    config = settings(redis_url_objects)
    assert config["PROXY_STALE_TTL"] == "2592000"
    assert config["PROXY_REDIS_TIMEOUT"] == "0.25"


def test_config_becomes_proxy_variables(everything_objects: list[Manifest]) -> None:
    config = settings(everything_objects)
    assert config["PROXY_CACHE_TTL"] == "600"
    assert config["PROXY_LOG_LEVEL"] == "warning"
    assert config["PROXY_ACCESS_LOG"] == "all"
    assert config["PROXY_WARMUP"] == "true"
    assert config["PROXY_UPSTREAM_URL"] == "https://api.1nce.com/management-api"
    assert all(name.startswith("PROXY_") for name in config)


# Optional objects ----------------------------------------------------------------------------


def test_hpa_owns_the_replica_count(
    default_objects: list[Manifest], everything_objects: list[Manifest]
) -> None:
    assert deployment(default_objects)["spec"]["replicas"] == 2
    assert "replicas" not in deployment(everything_objects)["spec"]
    hpa = one(everything_objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment(everything_objects)["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)


def test_pdb_and_network_policy_select_the_pods(everything_objects: list[Manifest]) -> None:
    pod_labels = deployment(everything_objects)["spec"]["template"]["metadata"]["labels"]
    pdb = one(everything_objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    policy = one(everything_objects, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_network_policy_allows_callers_scraper_dns_redis_and_1nce(
    everything_objects: list[Manifest],
) -> None:
    spec = one(everything_objects, "NetworkPolicy")["spec"]
    assert len(spec["ingress"]) == 3  # callers, Prometheus, then the helm test pod
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert rule["from"]
    # The test pod gets in whatever ingressFrom allows, and only this release's test pod.
    test_labels = helm_test_pod(everything_objects)["metadata"]["labels"]
    (peer,) = spec["ingress"][2]["from"]
    assert set(peer) == {"podSelector"}
    assert selects(peer["podSelector"]["matchLabels"], test_labels)
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    pod_labels = deployment(everything_objects)["spec"]["template"]["metadata"]["labels"]
    assert not selects(peer["podSelector"]["matchLabels"], pod_labels)
    allowed = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP"), (443, "TCP")} <= allowed
    assert all(rule.get("to") for rule in spec["egress"])


def test_network_policy_has_no_test_rule_without_tests() -> None:
    objects = render("np", sets=("networkPolicy.enabled=true", "tests.enabled=false"))
    assert "Pod" not in kinds(objects)
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [rule["from"] for rule in ingress] == [
        [{"podSelector": {}}],
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    ]


def test_network_policy_leaves_redis_out_without_redis() -> None:
    objects = render("pp", sets=("networkPolicy.enabled=true",))
    spec = one(objects, "NetworkPolicy")["spec"]
    ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert ports == {53, 443}


def egress_rules(*sets: str) -> list[list[int]]:
    """TCP ports of each egress rule of the policy rendered with these --set assignments."""
    objects = render("np", sets=("networkPolicy.enabled=true", *sets))
    rules = one(objects, "NetworkPolicy")["spec"]["egress"]
    # An egress rule without ports would open every port of its peers.
    assert all(rule["ports"] for rule in rules), rules
    assert all(port["protocol"] == "TCP" for rule in rules for port in rule["ports"])
    return [[port["port"] for port in rule["ports"]] for rule in rules]


def upstream_ports(*sets: str) -> list[int]:
    """Ports of the 1NCE API rule (the only egress rule once DNS and Redis are off)."""
    (ports,) = egress_rules(
        "networkPolicy.egress.dns.enabled=false", "networkPolicy.egress.redis.enabled=false", *sets
    )
    return ports


def redis_ports(*sets: str) -> list[int] | None:
    """Ports of the Redis rule (the only egress rule once DNS and the upstream are off)."""
    rules = egress_rules(
        "networkPolicy.egress.dns.enabled=false",
        "networkPolicy.egress.upstream.enabled=false",
        *sets,
    )
    assert len(rules) <= 1
    return sorted(rules[0]) if rules else None


@pytest.mark.parametrize(
    ("url", "ports"),
    [
        ("https://api.1nce.com/management-api", [443]),
        ("http://sandbox.example:8443/management-api", [8443]),
        ("http://sandbox.example/management-api", [80]),
        ("https://api.example.com:9443", [9443]),
        ("https://[fd00::10]:8443/management-api", [8443]),
        ("https://[fd00::10]/management-api", [443]),
    ],
)
def test_upstream_egress_port_comes_from_the_upstream_url(url: str, ports: list[int]) -> None:
    assert upstream_ports(f"config.upstreamUrl={url}") == ports


def test_listed_upstream_ports_are_added_to_the_urls() -> None:
    assert upstream_ports("networkPolicy.egress.upstream.ports={8080,3128}") == [443, 8080, 3128]
    assert upstream_ports("networkPolicy.egress.upstream.ports={443}") == [443]


@pytest.mark.parametrize(
    ("url", "ports"),
    [
        ("rediss://:secret@redis.data.svc:6380/0", [6380]),
        ("redis://redis.data.svc/0", [6379]),
        ("rediss://redis.data.svc", [6379]),  # redis-py's default for rediss:// too
        # urllib's reading: the host follows the last "@", so the password's ":1" is no port.
        ("redis://:pass:1@word@redis.data.svc:6381/0", [6381]),
        ("redis://user:pass:1@redis.data.svc/0", [6379]),
    ],
)
def test_redis_egress_port_comes_from_the_redis_url(url: str, ports: list[int]) -> None:
    assert redis_ports("redis.mode=url", f"secret.redisUrl={url}") == ports


def test_redis_unix_socket_needs_no_redis_rule() -> None:
    sets = ("redis.mode=url", "secret.redisUrl=unix:///run/redis/redis.sock")
    assert redis_ports(*sets) is None
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={6390}") == [6390]


def test_redis_egress_ports_come_from_the_sentinel_hosts() -> None:
    sets = ("redis.mode=sentinel", "redis.sentinel.hosts={sentinel-a:26379,sentinel-b:26380}")
    # Each Sentinel's port, and 6379 for the master the Sentinels name (not in the values).
    assert redis_ports(*sets) == [6379, 26379, 26380]
    # A listed port replaces that guess and adds to the Sentinels' ports.
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={6380}") == [6380, 26379, 26380]


def test_redis_url_in_an_existing_secret_takes_the_listed_ports() -> None:
    sets = ("redis.mode=url", "existingSecret.name=creds")
    assert redis_ports(*sets) == [6379]
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={6380}") == [6380]
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={6380,6379}") == [6379, 6380]


def test_listed_redis_ports_are_added_to_a_url_in_the_values() -> None:
    sets = ("redis.mode=url", "secret.redisUrl=rediss://redis.data.svc:6380/0")
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={6381}") == [6380, 6381]


def test_redis_egress_ports_come_from_the_cluster_nodes() -> None:
    sets = ("redis.mode=cluster", "redis.cluster.nodes={node-0:6379,node-1:6379,[fd00::2]:7000}")
    # Each seed's client port, once; no guess and no bus port (client port + 10000).
    assert redis_ports(*sets) == [6379, 7000]
    # Nodes the seeds do not name, on other ports, are listed.
    assert redis_ports(*sets, "networkPolicy.egress.redis.ports={7001}") == [6379, 7000, 7001]


def test_redis_cluster_values_open_the_derived_ports(
    redis_cluster_objects: list[Manifest],
) -> None:
    rules = one(redis_cluster_objects, "NetworkPolicy")["spec"]["egress"]
    ports = [[(port["port"], port["protocol"]) for port in rule["ports"]] for rule in rules]
    assert ports == [
        [(53, "UDP"), (53, "TCP")],
        [(6379, "TCP"), (6380, "TCP"), (6381, "TCP")],
        [(443, "TCP")],
    ]


def test_sentinel_tls_values_open_the_derived_ports(sentinel_tls_objects: list[Manifest]) -> None:
    rules = one(sentinel_tls_objects, "NetworkPolicy")["spec"]["egress"]
    ports = [[(port["port"], port["protocol"]) for port in rule["ports"]] for rule in rules]
    assert ports == [
        [(53, "UDP"), (53, "TCP")],
        [(26379, "TCP"), (26380, "TCP"), (6380, "TCP")],
        [(8443, "TCP")],
    ]


def test_service_monitor_scrapes_the_service(everything_objects: list[Manifest]) -> None:
    monitor = one(everything_objects, "ServiceMonitor")
    service = one(everything_objects, "Service")
    assert monitor["apiVersion"] == MONITORING_API
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_grafana_dashboard_is_real_json_about_the_proxy_metrics(
    everything_objects: list[Manifest],
) -> None:
    maps = [o for o in everything_objects if o["metadata"]["name"].endswith("-dashboard")]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert maps[0]["metadata"]["annotations"] == {"grafana_folder": "Services"}
    (document,) = maps[0]["data"].values()
    dashboard = json.loads(document)
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 8
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in expressions))
    # Each query reads a proxy metric or a process metric of prometheus_client's collectors.
    assert all(metric_names(e) or "process_" in e for e in expressions), "a query of neither"
    assert used <= readme_metric_names(), used - readme_metric_names()
    for metric in (
        "product_proxy_http_requests_total",
        "product_proxy_http_request_duration_seconds",
        "product_proxy_cache_lookups_total",
        "product_proxy_upstream_requests_total",
        "product_proxy_catalog_age_seconds",
        "product_proxy_redis_up",
    ):
        assert metric in used, metric
    text = "\n".join(expressions)
    assert "histogram_quantile(0.5," in text
    assert "histogram_quantile(0.99," in text
    assert "by (route, status)" in text
    assert "by (endpoint, outcome)" in text
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_shows_memory_cpu_and_file_descriptors_by_pod() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    selector = 'namespace="$namespace", job="$job"'
    expected = {
        "Memory (resident) by pod": (
            "bytes",
            f"sum by (pod) (process_resident_memory_bytes{{{selector}}})",
        ),
        "CPU by pod": (
            "short",
            f"sum by (pod) (rate(process_cpu_seconds_total{{{selector}}}[5m])){NO_DATA_IS_0}",
        ),
        "Open file descriptors by pod": ("short", f"sum by (pod) (process_open_fds{{{selector}}})"),
    }
    for title, (unit, expression) in expected.items():
        panel = panels[title]
        assert panel["type"] == "timeseries"
        assert panel["fieldConfig"]["defaults"]["unit"] == unit
        first = panel["targets"][0]
        assert first["expr"] == expression, title
        assert first["legendFormat"] == "{{pod}}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    limit = panels["Open file descriptors by pod"]["targets"][1]
    assert limit["expr"] == f"min(process_max_fds{{{selector}}})"
    # Below every other panel, side by side, without overlapping.
    boxes = [panels[title]["gridPos"] for title in expected]
    bottom = max(
        p["gridPos"]["y"] + p["gridPos"]["h"]
        for p in dashboard["panels"]
        if p["title"] not in expected and p["type"] != "row"
    )
    assert all(box["y"] > bottom for box in boxes)
    assert [box["x"] for box in boxes] == [0, 8, 16]
    assert all(box["w"] == 8 for box in boxes)


def test_dashboard_shows_requests_and_p95_latency_by_caller() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in dashboard["panels"]}
    # Probes and scrapes are nobody's calls: left out, as in the overview's request rate.
    selector = 'namespace="$namespace", job="$job", route!~"/healthz|/readyz|/metrics"'
    # An event stream is one request that lasts up to an hour: counted, but not timed.
    timed = f'{selector}, route!="/api/v1/events"'
    buckets = f"rate(product_proxy_http_request_duration_seconds_bucket{{{timed}}}[5m])"
    expected = {
        "Requests / s by caller": (
            "reqps",
            (
                f"sum by (caller) (rate(product_proxy_http_requests_total{{{selector}}}[5m]))"
                f"{NO_DATA_IS_0}"
            ),
            "{{caller}}",
        ),
        "Latency p95 by caller": (
            "s",
            f"histogram_quantile(0.95, sum by (caller, le) ({buckets}))",
            "p95 {{caller}}",
        ),
    }
    _check_timeseries(panels, expected)
    # In a row of their own, right under the HTTP panels, side by side and overlapping nothing.
    row = panels["Callers"]
    assert row["type"] == "row"
    boxes = [panels[title]["gridPos"] for title in expected]
    assert [box["y"] for box in boxes] == [row["gridPos"]["y"] + 1] * 2
    assert [(box["x"], box["w"]) for box in boxes] == [(0, 12), (12, 12)]
    http_bottom = max(
        p["gridPos"]["y"] + p["gridPos"]["h"]
        for p in dashboard["panels"]
        if p["title"].endswith("by route") or p["title"] == "Requests / s by route and status"
    )
    assert row["gridPos"]["y"] == http_bottom
    cells = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


# Alerts --------------------------------------------------------------------------------------


def rule_groups(objects: list[Manifest]) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", one(objects, "PrometheusRule")["spec"]["groups"])


def alerts(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rule_groups(objects) for rule in group["rules"]}


def test_alert_rules_cover_what_to_alert_on(everything_objects: list[Manifest]) -> None:
    rules = alerts(everything_objects)
    stale = rules["ProductProxyCatalogStale"]["expr"]
    # config.cacheTtl 600 in the everything values + the default 300 s margin.
    assert "product_proxy_catalog_age_seconds" in stale
    assert "> 900" in stale
    upstream = rules["ProductProxyUpstreamErrors"]["expr"]
    assert "product_proxy_upstream_requests_total{" in upstream
    assert 'outcome!="ok"' in upstream
    redis = rules["ProductProxyRedisDown"]
    assert "product_proxy_redis_up" in redis["expr"]
    assert redis["expr"].endswith("== 0")
    assert redis["for"] == "2m"
    key_file = rules["ProductProxyApiKeysFileUnusable"]
    assert "product_proxy_api_keys_file_usable" in key_file["expr"]
    assert key_file["expr"].endswith("== 0")
    assert key_file["for"] == "5m"
    errors = rules["ProductProxyHighErrorRatio"]["expr"]
    assert 'status=~"5.."' in errors
    assert "product_proxy_http_requests_total" in errors
    for rule in rules.values():
        assert rule["labels"]["severity"]
    assert 'job="everything-product-proxy", namespace="proxy"' in stale


def test_alert_expressions_use_metrics_the_service_exports(
    everything_objects: list[Manifest],
) -> None:
    known = readme_metric_names()
    for name, rule in alerts(everything_objects).items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= known, f"{name}: {used - known}"


def test_promtool_checks_the_rules(everything_objects: list[Manifest], tmp_path: Path) -> None:
    promtool = tool("promtool", optional=True)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(everything_objects)}), encoding="utf-8")
    result = run([promtool, "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # busy: callers ask, its catalog only ages (refresh fails); idle: nobody asks.
      - series: 'product_proxy_catalog_age_seconds{SEL, pod="busy"}'
        values: '0+60x30'
      - series: 'product_proxy_cache_lookups_total{SEL, pod="busy", result="stale"}'
        values: '0+30x30'
      - series: 'product_proxy_catalog_age_seconds{SEL, pod="idle"}'
        values: '0+60x30'
      - series: 'product_proxy_cache_lookups_total{SEL, pod="idle", result="hit"}'
        values: '5x30'
      - series: 'product_proxy_redis_up{SEL, pod="busy"}'
        values: '1 1 0x10'
      - series: 'product_proxy_api_keys_file_usable{SEL, pod="busy"}'
        values: '1 1 0x10'
      - series: 'product_proxy_api_keys_file_usable{SEL, pod="idle"}'
        values: '1x30'
      - series: 'product_proxy_upstream_requests_total{SEL, endpoint="products", outcome="timeout"}'
        values: '0+1x30'
      - series: 'product_proxy_upstream_requests_total{SEL, endpoint="products", outcome="ok"}'
        values: '0+1x30'
      - series: 'product_proxy_http_requests_total{SEL, route="/v1/products", status="200"}'
        values: '0+100x30'
      - series: 'product_proxy_http_requests_total{SEL, route="/v1/products", status="503"}'
        values: '0+20x30'
    alert_rule_test:
      - eval_time: 9m
        alertname: ProductProxyCatalogStale
      - eval_time: 20m
        alertname: ProductProxyCatalogStale
        exp_alerts:
          - exp_labels: {severity: warning, namespace: proxy, pod: busy}
      - eval_time: 6m
        alertname: ProductProxyRedisDown
        exp_alerts:
          - exp_labels: {severity: warning, namespace: proxy, pod: busy}
      - eval_time: 5m
        alertname: ProductProxyApiKeysFileUnusable
      - eval_time: 8m
        alertname: ProductProxyApiKeysFileUnusable
        exp_alerts:
          - exp_labels: {severity: warning, namespace: proxy, pod: busy}
      - eval_time: 25m
        alertname: ProductProxyUpstreamErrors
        exp_alerts:
          - exp_labels:
              severity: warning
              namespace: proxy
              job: JOB
              endpoint: products
              outcome: timeout
      - eval_time: 15m
        alertname: ProductProxyHighErrorRatio
        exp_alerts:
          - exp_labels: {severity: critical, namespace: proxy, job: JOB}
  - interval: 1m
    input_series:
      # Probes answering 503 while a replica warms up or drains are not caller errors.
      - series: 'product_proxy_http_requests_total{SEL, route="/v1/products", status="200"}'
        values: '0+100x30'
      - series: 'product_proxy_http_requests_total{SEL, route="/readyz", status="503"}'
        values: '0+100x30'
    alert_rule_test:
      - eval_time: 15m
        alertname: ProductProxyHighErrorRatio
"""


def test_promtool_alerts_fire_when_they_should(
    default_objects: list[Manifest], tmp_path: Path
) -> None:
    promtool = tool("promtool", optional=True)
    objects = render("pp", sets=("prometheusRule.enabled=true",), monitoring_api=True)
    groups = rule_groups(objects)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # checked by `promtool check rules`; not compared here
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    job = deployment(default_objects)["metadata"]["name"]
    cases = PROMTOOL_TESTS.replace("SEL", f'job="{job}", namespace="{NAMESPACE}"')
    (tmp_path / "tests.yaml").write_text(cases.replace("JOB", job), encoding="utf-8")
    result = run([promtool, "test", "rules", str(tmp_path / "tests.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


# Kubernetes schemas and checkov ---------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_renders_pass_kubernetes_validate_strict(
    renders: dict[str, list[Manifest]], tmp_path: Path, version: str
) -> None:
    validate = tool("kubernetes-validate")
    files = []
    for name, objects in renders.items():
        # ServiceMonitor and PrometheusRule are CRDs it has no schema for: they are checked
        # above (structure, selectors, promtool) instead.
        plain = [obj for obj in objects if obj["kind"] not in MONITORING_KINDS]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(plain), encoding="utf-8")
        files.append(str(path))
    result = run([validate, "--strict", "--kubernetes-version", version, *files])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr
    assert "WARN" not in result.stdout + result.stderr
    checked = sum(len(objects) for objects in renders.values())
    monitoring = sum(
        obj["kind"] in MONITORING_KINDS for objects in renders.values() for obj in objects
    )
    assert result.stdout.count("passed for resource") == checked - monitoring


def checked(report: dict[str, Any], outcome: str) -> set[tuple[str, str]]:
    """(check id, resource) pairs of one outcome (passed, failed, skipped) in a checkov report."""
    results = report["results"][f"{outcome}_checks"]
    return {(result["check_id"], result["resource"]) for result in results}


@pytest.mark.timeout(240)  # checkov's first start on a fresh machine is slow
def test_checkov_passes_with_the_documented_skips(
    checkov_report: dict[str, Any], renders: dict[str, list[Manifest]]
) -> None:
    assert not checked(checkov_report, "failed"), checked(checkov_report, "failed")
    assert checkov_report["summary"]["failed"] == 0
    passed = checked(checkov_report, "passed")
    for name, objects in renders.items():
        proxy = f"Deployment.{NAMESPACE}.{deployment(objects)['metadata']['name']}"
        test = f"Pod.{NAMESPACE}.{helm_test_pod(objects)['metadata']['name']}"
        # Secrets as files, not environment variables, in every render (no skip any more);
        # the helm test pod is checked like the Deployment.
        assert ("CKV_K8S_35", proxy) in passed, name
        for check in ("CKV_K8S_35", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_11"):
            assert (check, test) in passed, (name, check)


@pytest.mark.timeout(240)
def test_only_the_test_pod_skips_probe_checks(checkov_report: dict[str, Any]) -> None:
    skipped = checked(checkov_report, "skipped")
    assert skipped
    assert {check for check, _ in skipped} == {"CKV_K8S_8", "CKV_K8S_9"}
    assert all(resource.startswith("Pod.") for _, resource in skipped), skipped


def test_every_checkov_skip_has_a_reason_here_and_in_the_readme(
    default_objects: list[Manifest],
) -> None:
    config = (CHART / ".checkov.yaml").read_text(encoding="utf-8")
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    lines = config.splitlines()
    skips = yaml.safe_load(config)["skip-check"]
    assert skips
    # Secrets are files now: CKV_K8S_35 (secrets as environment variables) is no longer skipped.
    assert "CKV_K8S_35" not in skips
    assert "CKV_K8S_35" not in "\n".join(
        path.read_text(encoding="utf-8") for path in CHART.rglob("*.yaml")
    )
    for check in skips:
        index = lines.index(f"  - {check}")
        assert lines[index - 1].lstrip().startswith("#"), f"{check} has no reason"
        assert f"`{check}`" in readme, f"{check} not explained in README.md"
    # The test pod's own skips (annotations "CKV_K8S_8=<reason>") are explained there too.
    annotations = helm_test_pod(default_objects)["metadata"]["annotations"]
    inline = {key: value for key, value in annotations.items() if key.startswith("checkov.io/")}
    assert sorted(value.split("=")[0] for value in inline.values()) == ["CKV_K8S_8", "CKV_K8S_9"]
    for value in inline.values():
        check, reason = value.split("=")
        assert reason.strip(), check
        assert f"`{check}`" in readme, f"{check} not explained in README.md"


# The helm test pod -----------------------------------------------------------------------------


def test_helm_test_pod_is_a_hook_that_runs_the_services_image(
    renders: dict[str, list[Manifest]],
) -> None:
    for name, objects in renders.items():
        pod = helm_test_pod(objects)
        assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
            "before-hook-creation,hook-succeeded"
        )
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never"
        test = helm_test_container(objects)
        # The same image (tag or digest) and pull policy as the Deployment.
        assert test["image"] == container(objects)["image"], name
        assert test["imagePullPolicy"] == container(objects)["imagePullPolicy"]
        assert spec.get("imagePullSecrets") == pod_spec(objects).get("imagePullSecrets")
        # python -c, no shell; the script compiles.
        assert test["command"][:2] == ["python", "-c"]
        assert len(test["command"]) == 3
        compile(test["command"][2], "<helm test>", "exec")
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(test["resources"][kind]), kind
        # Through the Service: its name and port.
        service = one(objects, "Service")
        base = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:8080"
        assert test["env"][0] == {"name": "TEST_BASE_URL", "value": base}
        # It is never selected by the Service or the PodDisruptionBudget.
        assert not selects(service["spec"]["selector"], pod["metadata"]["labels"])
    digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    assert helm_test_container(renders["everything"])["image"].endswith(f"@{digest}")
    assert (
        helm_test_pod(renders["everything"])["spec"]["tolerations"]
        == (pod_spec(renders["everything"])["tolerations"])
    )


def test_helm_test_pod_is_left_out_when_tests_are_off() -> None:
    assert "Pod" not in kinds(render("pp", sets=("tests.enabled=false",)))


def test_helm_test_pod_reads_only_the_api_keys_as_a_file(redis_url_objects: list[Manifest]) -> None:
    pod = helm_test_pod(redis_url_objects)
    test = helm_test_container(redis_url_objects)
    (volume,) = pod["spec"]["volumes"]
    # Only the API keys, from the same Secret and key, as the same file as the Deployment's.
    assert projected_refs(volume) == {
        API_KEYS_FILE: secret_refs(redis_url_objects)["PROXY_API_KEYS"],
    }
    assert volume["projected"]["defaultMode"] == 0o440
    assert test["volumeMounts"] == [
        {"name": volume["name"], "mountPath": SECRETS_DIR, "readOnly": True}
    ]
    assert {"name": "TEST_API_KEYS_FILE", "value": f"{SECRETS_DIR}/{API_KEYS_FILE}"} in test["env"]
    assert not any("valueFrom" in item for item in test["env"])


@pytest.mark.parametrize(
    "sets",
    [
        ("secret.apiKeys={key-a,key-b}",),
        ("existingSecret.name=creds",),
        ("existingSecret.name=creds", "requireApiKeys=true"),
        ("existingSecret.name=creds", "existingSecret.keys.apiKeys=caller-keys"),
    ],
)
def test_helm_test_pod_reads_the_api_keys_as_the_deployment_does(sets: tuple[str, ...]) -> None:
    files = render("keys", sets=sets)
    (volume,) = helm_test_pod(files)["spec"]["volumes"]
    # The same file name as the Deployment's: api-keys when required, else PROXY_API_KEYS.
    deployment_refs = projected_refs(volumes(files)["secrets"])
    ((file_name, ref),) = projected_refs(volume).items()
    assert deployment_refs[file_name] == ref == secret_refs(files)["PROXY_API_KEYS"]
    test_env = {item["name"]: item for item in helm_test_container(files)["env"]}
    assert test_env["TEST_API_KEYS_FILE"]["value"] == f"{SECRETS_DIR}/{file_name}"
    variables = render("keys", sets=(*sets, "secret.mountAsFiles=false"))
    test = helm_test_container(variables)
    keys = {item["name"]: item for item in test["env"]}
    assert (
        keys["TEST_API_KEYS"]["valueFrom"]["secretKeyRef"]
        == (secret_refs(variables)["PROXY_API_KEYS"])
    )
    assert "volumes" not in helm_test_pod(variables)["spec"]


def test_helm_test_pod_sends_no_key_when_the_pods_read_none() -> None:
    for sets in ((), ("existingSecret.name=creds", "existingSecret.keys.apiKeys=")):
        test = helm_test_container(render("open", sets=sets))
        assert [item["name"] for item in test["env"]] == ["TEST_BASE_URL"]
        assert "volumeMounts" not in test


def run_helm_test_script(
    script: str, base_url: str, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run the test pod's ``python -c`` script here, with an HTTP proxy that must be bypassed."""
    unused_proxy = f"http://127.0.0.1:{free_port()}"
    environment = clean_env() | {
        "TEST_BASE_URL": base_url,
        "http_proxy": unused_proxy,
        "HTTP_PROXY": unused_proxy,
        "no_proxy": "",
        "NO_PROXY": "",
        **variables,
    }
    return subprocess.run(  # noqa: S603 - this interpreter and the chart's own script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=environment,
    )


def wait_ready(port: int) -> None:
    """Wait up to 10 s for ``/readyz`` 200 on loopback ``port`` (the warm-up's first fetch)."""
    for _ in range(100):
        if http_status(port, "/readyz") == 200:
            return
        time.sleep(0.1)


@pytest.mark.timeout(90)
def test_helm_test_script_passes_against_a_live_service_and_fails_otherwise(
    redis_url_objects: list[Manifest], tmp_path: Path
) -> None:
    script = helm_test_container(redis_url_objects)["command"][2]
    # The file both read, as a Secret may hold it now: named keys a line, a comment, and a bare
    # key whose text before its ":" is no name (so all of it is the key).
    keys = tmp_path / API_KEYS_FILE
    keys.write_text(
        "# rotated in November\nbilling:key-for-billing\n"
        "provisioning: key-for-provisioning , -odd:key\n",
        encoding="utf-8",
    )
    # As the chart's Secret holds secret.apiKeys: comma-separated; the file may end with a newline.
    bare = tmp_path / "PROXY_API_KEYS"
    bare.write_text("key-for-billing,key-for-provisioning\n", encoding="utf-8")
    service_env = {"PROXY_API_KEYS_FILE": str(keys), "PROXY_WARMUP": "true"}
    with ProxyProcess(service_env, args=["--sandbox"]) as proxy:
        wait_ready(proxy.port)
        from_file = run_helm_test_script(script, proxy.url, TEST_API_KEYS_FILE=str(keys))
        from_bare_file = run_helm_test_script(script, proxy.url, TEST_API_KEYS_FILE=str(bare))
        from_env = run_helm_test_script(
            script, proxy.url, TEST_API_KEYS="provisioning:key-for-provisioning,billing:x"
        )
        odd = run_helm_test_script(script, proxy.url, TEST_API_KEYS="-odd:key")
        wrong = run_helm_test_script(script, proxy.url, TEST_API_KEYS="not-a-key")
        missing = run_helm_test_script(script, proxy.url)
    for passed in (from_file, from_bare_file, from_env, odd):
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert re.fullmatch(
            rf"ok: {re.escape(proxy.url)}/readyz 200, {re.escape(proxy.url)}/v1/products 200 "
            r"with [1-9][0-9]* products\n",
            passed.stdout,
        ), passed.stdout
    for failed in (wrong, missing):
        assert failed.returncode == 1
        assert f"GET {proxy.url}/v1/products answered 401" in failed.stderr, failed.stderr
    down = run_helm_test_script(script, proxy.url, TEST_API_KEYS="key-for-billing")
    assert down.returncode == 1
    assert "Connection refused" in down.stderr, down.stderr


@pytest.mark.timeout(90)
def test_helm_test_script_asks_readiness_on_the_management_port(
    management_objects: list[Manifest],
) -> None:
    script = helm_test_container(management_objects)["command"][2]
    service_env = {"PROXY_API_KEYS": "billing:key-for-billing", "PROXY_WARMUP": "true"}
    with ProxyProcess(service_env, args=["--sandbox"], management=True) as proxy:
        assert proxy.management_port is not None
        wait_ready(proxy.management_port)
        keys = {"TEST_API_KEYS": "billing:key-for-billing"}
        passed = run_helm_test_script(
            script, proxy.url, TEST_MANAGEMENT_URL=proxy.management_url, **keys
        )
        # Without the management URL it asks the API port, where /readyz is an unknown path.
        api_port_only = run_helm_test_script(script, proxy.url, **keys)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.fullmatch(
        rf"ok: {re.escape(proxy.management_url)}/readyz 200, {re.escape(proxy.url)}/v1/products "
        r"200 with [1-9][0-9]* products\n",
        passed.stdout,
    ), passed.stdout
    assert api_port_only.returncode == 1
    assert f"GET {proxy.url}/readyz answered 404" in api_port_only.stderr, api_port_only.stderr


# The management port ----------------------------------------------------------------------------


def test_management_port_is_off_by_default(default_objects: list[Manifest]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["managementPort"] is None
    assert "PROXY_MANAGEMENT_PORT" not in settings(default_objects)
    assert management_ports(default_objects) == []
    assert [item["name"] for item in helm_test_container(default_objects)["env"]] == [
        "TEST_BASE_URL"
    ]
    # Metrics share the API port: the monitor scrapes it and the policy lets the scraper in.
    objects = render(
        "pp",
        sets=("serviceMonitor.enabled=true", "networkPolicy.enabled=true"),
        monitoring_api=True,
    )
    assert [e["port"] for e in one(objects, "ServiceMonitor")["spec"]["endpoints"]] == ["http"]
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [[port["port"] for port in rule["ports"]] for rule in ingress] == [["http"]] * 3


def test_management_port_carries_probes_metrics_and_the_test_readiness(
    management_objects: list[Manifest],
) -> None:
    assert settings(management_objects)["PROXY_MANAGEMENT_PORT"] == str(MANAGEMENT_PORT)
    service = one(management_objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http": 8080,
        "management": MANAGEMENT_PORT,
    }
    (endpoint,) = one(management_objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("management", "/metrics")
    test = {
        item["name"]: item.get("value") for item in helm_test_container(management_objects)["env"]
    }
    name = service["metadata"]["name"]
    assert test["TEST_BASE_URL"] == f"http://{name}.{NAMESPACE}.svc:8080"
    assert test["TEST_MANAGEMENT_URL"] == f"http://{name}.{NAMESPACE}.svc:{MANAGEMENT_PORT}"


def test_network_policy_keeps_callers_and_the_scraper_on_their_own_ports(
    management_objects: list[Manifest],
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    ingress = one(management_objects, "NetworkPolicy")["spec"]["ingress"]
    callers, scraper, test_pod = ingress
    # Callers (ingressFrom) reach the API and not the metrics; the scraper (metricsFrom) the
    # metrics and not the API; this release's test pod both (/readyz and /v1/products).
    assert callers == {
        "from": values["networkPolicy"]["ingressFrom"],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    assert scraper == {
        "from": values["networkPolicy"]["metricsFrom"],
        "ports": [{"port": "management", "protocol": "TCP"}],
    }
    assert test_pod["ports"] == [
        {"port": "http", "protocol": "TCP"},
        {"port": "management", "protocol": "TCP"},
    ]
    assert selects(
        test_pod["from"][0]["podSelector"]["matchLabels"],
        helm_test_pod(management_objects)["metadata"]["labels"],
    )
    # The named ports the policy uses are the container's.
    names = {port["name"] for port in container(management_objects)["ports"]}
    assert {port["port"] for rule in ingress for port in rule["ports"]} == names


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("managementPort=8080",), "managementPort (8080) must differ from containerPort"),
        (
            ("containerPort=9000", "managementPort=9000"),
            "managementPort (9000) must differ from containerPort",
        ),
        (
            ("service.port=80", "managementPort=80"),
            "managementPort (80) must differ from service.port",
        ),
    ],
)
def test_management_port_must_differ_from_the_api_ports(
    sets: tuple[str, ...], message: str
) -> None:
    result = helm(*template_args("bad", sets=sets))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# API keys the service re-reads ----------------------------------------------------------------


def api_keys_files(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Files of the secrets volume that hold API keys, by name, as {name, key[, optional]}."""
    refs = projected_refs(volumes(objects)["secrets"])
    return {path: ref for path, ref in refs.items() if path in {API_KEYS_FILE, "PROXY_API_KEYS"}}


@pytest.mark.parametrize(
    "sets",
    [
        ("secret.apiKeys={billing:key-a,key-b}",),
        ("existingSecret.name=creds", "requireApiKeys=true"),
        ("existingSecret.name=creds", "requireApiKeys=true", "existingSecret.keys.apiKeys=keys"),
    ],
)
def test_required_api_keys_are_a_file_the_service_re_reads(sets: tuple[str, ...]) -> None:
    objects = render("keys", sets=sets)
    (ref,) = api_keys_files(objects).values()
    assert api_keys_files(objects) == {API_KEYS_FILE: ref}
    assert "optional" not in ref
    assert env(objects)["PROXY_API_KEYS_FILE"]["value"] == f"{SECRETS_DIR}/{API_KEYS_FILE}"
    # In the volume PROXY_SECRETS_DIR names, but under a name it does not read.
    assert env(objects)["PROXY_SECRETS_DIR"]["value"] == SECRETS_DIR
    assert not any("subPath" in mount for mount in mounts(objects).values())


@pytest.mark.parametrize("switch", ["requireApiKeys=null", "requireApiKeys=false"])
def test_optional_api_keys_stay_a_file_read_once(switch: str) -> None:
    # The key may be missing, and the service refuses a PROXY_API_KEYS_FILE naming no file.
    objects = render("keys", sets=("existingSecret.name=creds", switch))
    assert api_keys_files(objects) == {
        "PROXY_API_KEYS": {"name": "creds", "key": "api-keys", "optional": True}
    }
    assert "PROXY_API_KEYS_FILE" not in env(objects)


def test_api_keys_as_a_variable_are_never_a_file() -> None:
    objects = render("keys", sets=("secret.apiKeys={billing:key-a}", "secret.mountAsFiles=false"))
    assert "PROXY_API_KEYS_FILE" not in env(objects)
    assert env(objects)["PROXY_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "keys-product-proxy",
        "key": "api-keys",
    }


def test_named_api_keys_reach_the_secret_as_written(management_objects: list[Manifest]) -> None:
    secret = one(management_objects, "Secret")
    keys = base64.b64decode(secret["data"]["api-keys"]).decode()
    assert keys == "billing:key-for-billing,provisioning:key-for-provisioning"
    (volume,) = helm_test_pod(management_objects)["spec"]["volumes"]
    assert projected_refs(volume) == {
        API_KEYS_FILE: {"name": secret["metadata"]["name"], "key": "api-keys"}
    }


# The change feed and webhooks --------------------------------------------------------------------

# Chart value (under config) of each change feed setting, and the service's field it sets.
CHANGE_FEED_CONFIG = {
    "historyVersions": "history_versions",
    "historyMaxBytes": "history_max_bytes",
    "maxStreams": "max_streams",
    "streamKeepalive": "stream_keepalive",
    "streamMaxAge": "stream_max_age",
    "webhookTimeout": "webhook_timeout",
    "webhookRetryFor": "webhook_retry_for",
}
# Annotated bound of a service setting, and the JSON Schema keyword that says the same.
BOUND_KEYWORDS = {
    "ge": "minimum",
    "gt": "exclusiveMinimum",
    "le": "maximum",
    "lt": "exclusiveMaximum",
}
WEBHOOK_VARIABLES = ("PROXY_WEBHOOK_URLS", "PROXY_WEBHOOK_SECRET")


def service_bounds(field: str) -> dict[str, float]:
    """The service's bounds of a setting, as JSON Schema keywords."""
    bounds: dict[str, float] = {}
    for constraint in Settings.model_fields[field].metadata:
        for attribute, keyword in BOUND_KEYWORDS.items():
            if hasattr(constraint, attribute):
                bounds[keyword] = getattr(constraint, attribute)
    return bounds


def variable(field: str) -> str:
    """The environment variable of a service setting."""
    return f"PROXY_{field.upper()}"


def test_change_feed_defaults_are_the_services(default_objects: list[Manifest]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    config = settings(default_objects)
    for key, field in CHANGE_FEED_CONFIG.items():
        default = Settings.model_fields[field].default
        assert values["config"][key] == default, key
        assert config[variable(field)] == str(default), key
    assert config["PROXY_HISTORY_MAX_BYTES"] == str(20 * 1024 * 1024)


def test_change_feed_config_becomes_proxy_variables(everything_objects: list[Manifest]) -> None:
    config = settings(everything_objects)
    assert {name: config[name] for name in map(variable, CHANGE_FEED_CONFIG.values())} == {
        "PROXY_HISTORY_VERSIONS": "200",
        "PROXY_HISTORY_MAX_BYTES": "67108864",  # 64 MiB, no exponent
        "PROXY_MAX_STREAMS": "5000",
        "PROXY_STREAM_KEEPALIVE": "20",
        "PROXY_STREAM_MAX_AGE": "1800",
        "PROXY_WEBHOOK_TIMEOUT": "2.5",
        "PROXY_WEBHOOK_RETRY_FOR": "900",
    }
    # Webhook URLs may carry a token: never in the ConfigMap.
    assert not set(WEBHOOK_VARIABLES) & set(config)


def test_change_feed_schema_has_the_services_bounds() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    properties = schema["properties"]["config"]["properties"]
    for key, field in CHANGE_FEED_CONFIG.items():
        node = properties[key]
        chart_bounds = {k: node[k] for k in BOUND_KEYWORDS.values() if k in node}
        assert chart_bounds == service_bounds(field), key
        assert set(chart_bounds) & {"minimum", "exclusiveMinimum"}, key
        assert "maximum" in chart_bounds, key
        whole = Settings.model_fields[field].annotation is int
        assert node["type"] == ("integer" if whole else "number"), key
        assert node["description"].startswith(f"{variable(field)}: "), key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("historyVersions", 1),
        ("historyVersions", 1001),
        ("historyVersions", 2.5),
        ("historyVersions", "'50'"),
        ("historyMaxBytes", 1024 * 1024 - 1),
        ("historyMaxBytes", 256 * 1024 * 1024 + 1),
        ("maxStreams", 0),
        ("maxStreams", 100_001),
        ("streamKeepalive", 0),
        ("streamKeepalive", 300.5),
        ("streamMaxAge", 0.5),
        ("streamMaxAge", 86_401),
        ("webhookTimeout", 0),
        ("webhookTimeout", 61),
        ("webhookRetryFor", -1),
        ("webhookRetryFor", 86_401),
    ],
)
def test_change_feed_values_out_of_the_services_bounds_are_refused(
    tmp_path: Path, key: str, value: object
) -> None:
    values = tmp_path / "bad.yaml"
    values.write_text(f"config:\n  {key}: {value}\n", encoding="utf-8")
    result = helm(*template_args("bad", (values,)))
    assert result.returncode != 0
    assert f"config.{key}" in result.stderr, result.stderr


@pytest.mark.parametrize("end", ["lowest", "highest"])
def test_change_feed_values_at_the_bounds_are_taken_by_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    # The lowest a bound allows (a little above an exclusive one) and the highest: the chart
    # renders them, and the service takes what the ConfigMap then says.
    chosen: dict[str, float] = {}
    for key, field in CHANGE_FEED_CONFIG.items():
        bounds = service_bounds(field)
        if end == "highest":
            chosen[key] = bounds["maximum"]
        else:
            chosen[key] = bounds.get("minimum", bounds.get("exclusiveMinimum", 0) + 0.25)
    values = tmp_path / "bounds.yaml"
    values.write_text(yaml.safe_dump({"config": chosen}), encoding="utf-8")
    config = settings(render("bounds", (values,)))
    for name in [name for name in os.environ if name.startswith("PROXY_")]:
        monkeypatch.delenv(name)
    for name, text in config.items():
        monkeypatch.setenv(name, text)
    service = Settings(_env_file=None)
    for key, field in CHANGE_FEED_CONFIG.items():
        assert getattr(service, field) == chosen[key], key


def webhook_data(objects: list[Manifest]) -> dict[str, str]:
    """The chart's Secret's webhook entries, decoded."""
    data = one(objects, "Secret")["data"]
    return {
        key: base64.b64decode(value).decode()
        for key, value in data.items()
        if key.startswith("webhook-")
    }


@pytest.mark.parametrize("as_files", [True, False], ids=["files", "env"])
def test_webhook_urls_and_key_reach_the_pods_from_the_charts_secret(as_files: bool) -> None:  # noqa: FBT001
    sets = (
        "secret.webhookUrls={https://hooks.example.com/1nce?token=t0ken,http://sync.svc:8080/h}",
        "secret.webhookSecret=signing-key",
        f"secret.mountAsFiles={str(as_files).lower()}",
    )
    text = render_text("hooks", sets=sets)
    objects = [cast("Manifest", doc) for doc in yaml.safe_load_all(text) if doc]
    assert webhook_data(objects) == {
        "webhook-urls": "https://hooks.example.com/1nce?token=t0ken,http://sync.svc:8080/h",
        "webhook-secret": "signing-key",
    }
    refs = secret_refs(objects)
    assert {name: refs[name] for name in WEBHOOK_VARIABLES} == {
        "PROXY_WEBHOOK_URLS": {"name": "hooks-product-proxy", "key": "webhook-urls"},
        "PROXY_WEBHOOK_SECRET": {"name": "hooks-product-proxy", "key": "webhook-secret"},
    }
    if as_files:
        (source,) = volumes(objects)["secrets"]["projected"]["sources"]
        assert {item["path"] for item in source["secret"]["items"]} >= set(WEBHOOK_VARIABLES)
        assert not set(WEBHOOK_VARIABLES) & set(env(objects))
    else:
        assert "secrets" not in volumes(objects)
        assert set(WEBHOOK_VARIABLES) <= set(env(objects))
    # Neither the token nor the key shows anywhere in clear.
    assert "t0ken" not in text
    assert "signing-key" not in text
    assert not set(WEBHOOK_VARIABLES) & set(settings(objects))


@pytest.mark.parametrize("as_files", [True, False], ids=["files", "env"])
def test_existing_secret_webhook_keys_are_optional_references(as_files: bool) -> None:  # noqa: FBT001
    mode = f"secret.mountAsFiles={str(as_files).lower()}"
    refs = secret_refs(render("hooks", sets=("existingSecret.name=creds", mode)))
    assert {name: refs[name] for name in WEBHOOK_VARIABLES} == {
        "PROXY_WEBHOOK_URLS": {"name": "creds", "key": "webhook-urls", "optional": True},
        "PROXY_WEBHOOK_SECRET": {"name": "creds", "key": "webhook-secret", "optional": True},
    }
    renamed = secret_refs(
        render(
            "hooks",
            sets=(
                "existingSecret.name=creds",
                "existingSecret.keys.webhookUrls=receivers",
                "existingSecret.keys.webhookSecret=",
                mode,
            ),
        )
    )
    assert renamed["PROXY_WEBHOOK_URLS"] == {"name": "creds", "key": "receivers", "optional": True}
    assert "PROXY_WEBHOOK_SECRET" not in renamed


def test_webhook_key_alone_is_kept_and_no_webhooks_set_nothing(
    default_objects: list[Manifest],
) -> None:
    # A key without receivers is allowed (the service signs nothing yet): set ahead of the URLs.
    objects = render("hooks", sets=("secret.webhookSecret=signing-key",))
    assert webhook_data(objects) == {"webhook-secret": "signing-key"}
    assert set(secret_refs(objects)) == {"PROXY_WEBHOOK_SECRET"}
    assert not set(WEBHOOK_VARIABLES) & set(secret_refs(default_objects))


def webhook_ports(*sets: str) -> list[int] | None:
    """Ports of the webhook rule (the only egress rule once DNS and the upstream are off)."""
    rules = egress_rules(
        "networkPolicy.egress.dns.enabled=false",
        "networkPolicy.egress.upstream.enabled=false",
        "secret.webhookSecret=signing-key",
        *sets,
    )
    assert len(rules) <= 1
    return rules[0] if rules else None


@pytest.mark.parametrize(
    ("urls", "ports"),
    [
        ("https://hooks.example.com/1nce?token=t", [443]),
        ("http://sync.integrations.svc/hooks", [80]),
        (
            "https://hooks.example.com:8443/a,http://sync.svc:8080/b,https://other.example.com/c",
            [8443, 8080, 443],
        ),
        ("https://a.example.com/x,https://b.example.com/y", [443]),
        # urllib's reading: the host follows the last "@", so the password's ":1" is no port.
        ("https://user:pass:1@hooks.example.com/x", [443]),
        ("https://[fd00::20]:9443/x,https://[fd00::21]/y", [9443, 443]),
    ],
)
def test_webhook_egress_ports_come_from_the_urls(urls: str, ports: list[int]) -> None:
    assert webhook_ports(f"secret.webhookUrls={{{urls}}}") == ports


def test_webhook_egress_rule_needs_webhooks() -> None:
    urls = "secret.webhookUrls={https://hooks.example.com:8443/x}"
    assert webhook_ports() is None
    assert webhook_ports(urls, "networkPolicy.egress.webhooks.enabled=false") is None
    # Listed ports are added to the URLs' (and make a rule of their own).
    assert webhook_ports(urls, "networkPolicy.egress.webhooks.ports={443,8443}") == [8443, 443]
    assert webhook_ports("networkPolicy.egress.webhooks.ports={9000}") == [9000]


def test_webhook_urls_in_an_existing_secret_take_the_listed_ports() -> None:
    # The chart cannot read them: no rule unless their ports are listed.
    assert webhook_ports("existingSecret.name=creds") is None
    assert webhook_ports(
        "existingSecret.name=creds", "networkPolicy.egress.webhooks.ports={443}"
    ) == [443]


def test_everything_values_open_the_listed_webhook_ports_to_their_peers(
    everything_objects: list[Manifest],
) -> None:
    values = yaml.safe_load(EVERYTHING.read_text(encoding="utf-8"))
    rules = one(everything_objects, "NetworkPolicy")["spec"]["egress"]
    # DNS, Redis, the 1NCE API, the webhook receivers, then the extra rule.
    assert len(rules) == 5
    assert rules[3] == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}],
        "to": values["networkPolicy"]["egress"]["webhooks"]["to"],
    }


def _dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard, rows' panels included."""
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])
        found += [(panel["title"], target["expr"]) for target in panel.get("targets", [])]
    return found


def test_every_rate_panel_shows_0_where_no_series_exists_yet() -> None:
    # A labelled counter has no series until its first increment (no 5xx yet, no Redis error
    # yet): a rate over it is empty, and Grafana shows "No data" where 0 is the truth.
    rated = [
        (title, expression)
        for title, expression in _dashboard_expressions()
        if re.search(r"\b(rate|increase)\(", expression)
        # A quantile of nothing is unknown, not 0.
        and "histogram_quantile" not in expression
    ]
    assert len(rated) >= 12
    for title, expression in rated:
        numerator = expression.split(" / ", 1)[0]
        # "or on() vector(0)": 0 only when there is no series at all, never a 0 beside others.
        assert numerator.endswith((NO_DATA_IS_0, f"{NO_DATA_IS_0})")), (
            title,
            expression,
        )
    ratios = [expression for _title, expression in rated if " / " in expression]
    assert ratios
    for expression in ratios:
        # The denominator stays as it is: no traffic at all is no data, not a ratio of 0.
        assert NO_DATA_IS_0 not in expression.split(" / ", 1)[1]


def test_dashboard_latency_leaves_out_the_event_stream() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    timed = [e for e in expressions if "product_proxy_http_request_duration_seconds" in e]
    # p50 and p99 by route, p95 by caller.
    assert len(timed) == 3
    for expression in timed:
        assert 'route!="/api/v1/events"}' in expression, expression
    # Its requests still count.
    counted = [e for e in expressions if "product_proxy_http_requests_total" in e]
    assert counted
    assert not any("/api/v1/events" in e for e in counted)


def test_dashboard_shows_the_change_feed() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in dashboard["panels"]}
    selector = 'namespace="$namespace", job="$job"'
    window = "[$__rate_interval]"
    deliveries = f"product_proxy_webhook_deliveries_total{{{selector}}}{window}"
    expected = {
        "Catalog version": ("none", f"max(product_proxy_catalog_version{{{selector}}})", "version"),
        "Event streams by pod": (
            "short",
            f"sum by (pod) (product_proxy_event_streams{{{selector}}})",
            "{{pod}}",
        ),
        "Catalog changes / s by kind": (
            "short",
            (
                f"sum by (kind) (rate(product_proxy_catalog_changes_total{{{selector}}}{window}))"
                f"{NO_DATA_IS_0}"
            ),
            "{{kind}}",
        ),
        "Webhook deliveries / s by outcome": (
            "ops",
            f"sum by (outcome) (rate({deliveries})){NO_DATA_IS_0}",
            "{{outcome}}",
        ),
    }
    _check_timeseries(panels, expected)
    # A row of their own under Catalog and Redis, four abreast.
    row = panels["Change feed"]
    assert row["type"] == "row"
    above = panels["Catalog and Redis"]["gridPos"]["y"]
    catalog_bottom = max(
        p["gridPos"]["y"] + p["gridPos"]["h"]
        for p in dashboard["panels"]
        if p["type"] != "row"
        and p["gridPos"]["y"] > above
        and p["gridPos"]["y"] < row["gridPos"]["y"]
    )
    assert row["gridPos"] == {"x": 0, "y": catalog_bottom, "w": 24, "h": 1}
    boxes = [panels[title]["gridPos"] for title in expected]
    assert boxes == [{"x": x, "y": catalog_bottom + 1, "w": 6, "h": 8} for x in (0, 6, 12, 18)]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


# OpenTelemetry ---------------------------------------------------------------------------------


def otel_env(objects: list[Manifest]) -> list[tuple[str, str]]:
    """The proxy container's OTEL_* variables, in order, as (name, value)."""
    return [
        (item["name"], item["value"])
        for item in container(objects).get("env", [])
        if item["name"].startswith("OTEL_")
    ]


def test_otel_is_off_by_default_and_sets_nothing(renders: dict[str, list[Manifest]]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["otel"] == {
        "enabled": False,
        "endpoint": "",
        "serviceName": "",
        "sampler": "parentbased_traceidratio",
        "samplerArg": "0.1",
        "extraEnv": {},
    }
    for name, objects in renders.items():
        if name != "management":
            assert otel_env(objects) == [], name
            assert not any(key.startswith("OTEL_") for key in settings(objects)), name


def test_otel_enabled_sets_the_exporter_endpoint_name_and_sampler(
    management_objects: list[Manifest],
) -> None:
    assert otel_env(management_objects) == [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring.svc:4318"),
        ("OTEL_SERVICE_NAME", "ops-product-proxy"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=production"),
    ]


def test_otel_leaves_the_endpoint_and_argument_to_the_sdk_when_empty() -> None:
    sets = (
        "otel.enabled=true",
        "otel.serviceName=catalog",
        "otel.sampler=always_on",
        "otel.samplerArg=",
    )
    assert otel_env(render("pp", sets=sets)) == [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_SERVICE_NAME", "catalog"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
    ]


# Extra volumes, envFrom and sidecars ------------------------------------------------------------


def test_extra_volumes_mounts_env_from_and_sidecars_reach_the_deployment(tmp_path: Path) -> None:
    values = tmp_path / "extras.yaml"
    values.write_text(
        """
extraEnvFrom:
  - configMapRef:
      name: more-settings
  - secretRef:
      name: more-secrets
      optional: true
extraVolumes:
  - name: shared
    emptyDir:
      sizeLimit: 8Mi
extraVolumeMounts:
  - name: shared
    mountPath: /var/run/shared
sidecars:
  - name: log-shipper
    image: registry.example.com/log-shipper:1.0
    volumeMounts:
      - name: shared
        mountPath: /shared
        readOnly: true
""",
        encoding="utf-8",
    )
    objects = render("extras", (REDIS_URL, values))
    proxy = container(objects)
    # After the chart's own ConfigMap, so the chart's settings and env still win.
    assert proxy["envFrom"] == [
        {"configMapRef": {"name": "extras-product-proxy"}},
        {"configMapRef": {"name": "more-settings"}},
        {"secretRef": {"name": "more-secrets", "optional": True}},
    ]
    assert [m["mountPath"] for m in proxy["volumeMounts"]] == [
        "/tmp",  # noqa: S108 - a mount path, not a file
        SECRETS_DIR,
        "/var/run/shared",
    ]
    assert list(volumes(objects)) == ["tmp", "secrets", "shared"]
    assert volumes(objects)["shared"] == {"name": "shared", "emptyDir": {"sizeLimit": "8Mi"}}
    containers = pod_spec(objects)["containers"]
    assert [c["name"] for c in containers] == ["proxy", "log-shipper"]
    assert containers[1]["volumeMounts"] == [
        {"name": "shared", "mountPath": "/shared", "readOnly": True}
    ]


def test_extras_are_empty_by_default(default_objects: list[Manifest]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for key in ("extraEnvFrom", "extraVolumes", "extraVolumeMounts", "sidecars"):
        assert values[key] == [], key
    assert len(pod_spec(default_objects)["containers"]) == 1
    assert container(default_objects)["envFrom"] == [{"configMapRef": {"name": "pp-product-proxy"}}]


# Redis CA bundle -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("secretName=redis-tls", {"secret": {"secretName": "redis-tls"}}),
        ("configMapName=redis-ca", {"configMap": {"name": "redis-ca"}}),
    ],
)
def test_redis_ca_bundle_is_mounted_and_named(source: str, expected: dict[str, Any]) -> None:
    sets = ("redis.mode=url", "secret.redisUrl=rediss://redis.data.svc:6380/0")
    objects = render(
        "ca", sets=(*sets, f"redis.caBundle.{source}", "redis.caBundle.key=bundle.pem")
    )
    volume = volumes(objects)["redis-ca"]
    (kind,) = expected
    assert {key: volume[kind][key] for key in expected[kind]} == expected[kind]
    assert volume[kind]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
    assert volume[kind]["defaultMode"] == 0o444
    assert mounts(objects)[REDIS_CA_DIR] == {
        "name": "redis-ca",
        "mountPath": REDIS_CA_DIR,
        "readOnly": True,
    }
    assert env(objects)["PROXY_REDIS_CA_FILE"] == {
        "name": "PROXY_REDIS_CA_FILE",
        "value": f"{REDIS_CA_DIR}/bundle.pem",
    }
    assert "PROXY_REDIS_CA_FILE" not in settings(objects)


def test_redis_ca_bundle_with_a_url_the_chart_cannot_read() -> None:
    # A URL in an existingSecret: the chart cannot tell rediss:// and trusts the values.
    sets = ("redis.mode=url", "existingSecret.name=creds", "redis.caBundle.secretName=redis-tls")
    objects = render("ca", sets=sets)
    assert env(objects)["PROXY_REDIS_CA_FILE"]["value"] == f"{REDIS_CA_DIR}/ca.crt"


def test_redis_ca_bundle_defaults_to_ca_crt_and_works_without_secret_files() -> None:
    sets = ("redis.mode=cluster", "redis.cluster.nodes={n:6379}", "redis.tls=true")
    objects = render(
        "ca", sets=(*sets, "redis.caBundle.secretName=redis-tls", "secret.mountAsFiles=false")
    )
    assert env(objects)["PROXY_REDIS_CA_FILE"]["value"] == f"{REDIS_CA_DIR}/ca.crt"
    assert volumes(objects)["redis-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_no_redis_ca_bundle_by_default(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        assert "redis-ca" not in volumes(objects)
        assert "PROXY_REDIS_CA_FILE" not in env(objects)


def test_redis_ca_bundle_from_both_a_secret_and_a_config_map_is_refused() -> None:
    sets = ("redis.mode=url", "secret.redisUrl=rediss://r:6380/0")
    both = ("redis.caBundle.secretName=a", "redis.caBundle.configMapName=b")
    result = helm(*template_args("bad", sets=(*sets, *both)))
    assert result.returncode != 0
    assert "redis.caBundle" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("redis.caBundle.secretName=a",), "redis.caBundle is set but redis.mode is none"),
        (
            (
                "redis.mode=sentinel",
                "redis.sentinel.hosts={s:26379}",
                "redis.caBundle.secretName=a",
            ),
            "redis.caBundle is set but redis.mode is sentinel",
        ),
        (
            ("redis.mode=url", "secret.redisUrl=redis://r:6379/0", "redis.caBundle.secretName=a"),
            "redis.caBundle is set but secret.redisUrl is not a rediss:// URL",
        ),
        (
            (
                "redis.mode=cluster",
                "redis.cluster.nodes={n:6379}",
                "redis.caBundle.configMapName=b",
            ),
            "redis.caBundle is set but redis.tls is false",
        ),
    ],
)
def test_redis_ca_bundle_without_tls_to_redis_is_refused(
    sets: tuple[str, ...], message: str
) -> None:
    result = helm(*template_args("bad", sets=sets))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# PodDisruptionBudget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "rendered"),
    [
        ((), True),  # replicaCount 2
        (("replicaCount=1",), False),
        (("replicaCount=3",), True),
        (("autoscaling.enabled=true", "autoscaling.minReplicas=1", "replicaCount=5"), False),
        (("autoscaling.enabled=true", "autoscaling.minReplicas=2", "replicaCount=1"), True),
        (("podDisruptionBudget.enabled=false", "replicaCount=3"), False),
        (("podDisruptionBudget.enabled=true", "replicaCount=1"), True),
        (("podDisruptionBudget.enabled=null", "replicaCount=1"), False),
    ],
)
def test_pdb_is_on_when_more_than_one_replica_runs(sets: tuple[str, ...], rendered: bool) -> None:  # noqa: FBT001
    objects = render("pdb", sets=sets)
    budgets = [obj for obj in objects if obj["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == int(rendered)
    if rendered:
        assert budgets[0]["spec"]["minAvailable"] == 1
        assert selects(
            budgets[0]["spec"]["selector"]["matchLabels"],
            deployment(objects)["spec"]["template"]["metadata"]["labels"],
        )


def test_pdb_default_is_auto() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["podDisruptionBudget"]["enabled"] is None
    result = helm(*template_args("bad", sets=("podDisruptionBudget.enabled=auto",)))
    assert result.returncode != 0
    assert "podDisruptionBudget.enabled" in result.stderr, result.stderr


# Runbook links ---------------------------------------------------------------------------------


def test_every_built_in_alert_links_its_runbook_heading(
    everything_objects: list[Manifest],
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["prometheusRule"]["runbookBaseUrl"] == RUNBOOK
    rules = alerts(everything_objects)
    assert set(BUILT_IN_ALERTS) <= set(rules)
    for name in BUILT_IN_ALERTS:
        assert rules[name]["annotations"]["runbook_url"] == f"{RUNBOOK}#{name.lower()}"
    assert rules["ProductProxyCatalogStale"]["annotations"]["runbook_url"].endswith(
        "/docs/runbook.md#productproxycatalogstale"
    )
    # Additional rules are the user's: passed through as given.
    assert "runbook_url" not in rules["ProductProxyNoReplicas"]["annotations"]


def test_runbook_base_url_can_move_or_go() -> None:
    base = "https://wiki.example.com/runbooks/product-proxy"
    sets = ("prometheusRule.enabled=true", f"prometheusRule.runbookBaseUrl={base}")
    moved = alerts(render("pp", sets=sets, monitoring_api=True))
    assert {rule["annotations"]["runbook_url"] for rule in moved.values()} == {
        f"{base}#{name.lower()}" for name in BUILT_IN_ALERTS
    }
    gone = alerts(
        render(
            "pp",
            sets=("prometheusRule.enabled=true", "prometheusRule.runbookBaseUrl="),
            monitoring_api=True,
        )
    )
    assert set(gone) == set(BUILT_IN_ALERTS)
    assert not any("runbook_url" in rule["annotations"] for rule in gone.values())


# The Redis examples ----------------------------------------------------------------------------


def test_example_with_redis_reads_the_url_from_the_secret(
    with_redis_objects: list[Manifest],
) -> None:
    assert "Secret" not in kinds(with_redis_objects)
    assert secret_refs(with_redis_objects) == {
        "PROXY_CLIENT_ID": {"name": "product-proxy", "key": "client-id"},
        "PROXY_CLIENT_SECRET": {"name": "product-proxy", "key": "client-secret"},
        "PROXY_API_KEYS": {"name": "product-proxy", "key": "api-keys"},
        "PROXY_REDIS_URL": {"name": "product-proxy", "key": "redis-url"},
        "PROXY_ADMIN_TOKEN": {"name": "product-proxy", "key": "admin-token", "optional": True},
        "PROXY_WEBHOOK_URLS": {"name": "product-proxy", "key": "webhook-urls", "optional": True},
        "PROXY_WEBHOOK_SECRET": {
            "name": "product-proxy",
            "key": "webhook-secret",
            "optional": True,
        },
    }
    config = settings(with_redis_objects)
    assert not {key for key in config if key.startswith(("PROXY_REDIS_SENTINEL", "PROXY_REDIS_CL"))}
    assert list(volumes(with_redis_objects)) == ["tmp", "secrets"]
    assert env(with_redis_objects) == {
        "PROXY_SECRETS_DIR": {"name": "PROXY_SECRETS_DIR", "value": SECRETS_DIR},
        "PROXY_API_KEYS_FILE": {
            "name": "PROXY_API_KEYS_FILE",
            "value": f"{SECRETS_DIR}/{API_KEYS_FILE}",
        },
    }
    # The helm test sends one of the required API keys.
    (volume,) = helm_test_pod(with_redis_objects)["spec"]["volumes"]
    assert projected_refs(volume) == {API_KEYS_FILE: {"name": "product-proxy", "key": "api-keys"}}
    redis_rule = one(with_redis_objects, "NetworkPolicy")["spec"]["egress"][1]
    assert redis_rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert redis_rule["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "data"}
    }


def test_example_with_sentinel_names_the_bitnami_sentinels(
    with_sentinel_objects: list[Manifest],
) -> None:
    config = settings(with_sentinel_objects)
    assert config["PROXY_REDIS_SENTINELS"] == ",".join(
        f"redis-node-{n}.redis-headless.data.svc:26379" for n in range(3)
    )
    assert config["PROXY_REDIS_SENTINEL_MASTER"] == "mymaster"
    refs = secret_refs(with_sentinel_objects)
    # One password (Bitnami's) for the master and the Sentinels, from one key.
    assert (
        refs["PROXY_REDIS_PASSWORD"]
        == refs["PROXY_REDIS_SENTINEL_PASSWORD"]
        == {
            "name": "product-proxy",
            "key": "redis-password",
            "optional": True,
        }
    )
    assert refs["PROXY_API_KEYS"] == {"name": "product-proxy", "key": "api-keys"}
    assert "PROXY_REDIS_URL" not in refs
    redis_rule = one(with_sentinel_objects, "NetworkPolicy")["spec"]["egress"][1]
    assert sorted(port["port"] for port in redis_rule["ports"]) == [6379, 26379]


def test_readme_gives_the_commands_for_each_example() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running with a Redis", 1)[1].split("\n## ", 1)[0]
    for path in (WITH_REDIS, WITH_SENTINEL):
        assert f"-f helm/product-proxy/examples/{path.name}" in section, path.name
    assert "helm install redis oci://registry-1.docker.io/bitnamicharts/redis" in section
    assert "--set architecture=standalone" in section
    assert "--set architecture=replication --set sentinel.enabled=true" in section


# Chart metadata --------------------------------------------------------------------------------


def test_chart_names_its_home_sources_and_maintainers() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["version"] == "0.3.0"
    assert chart["appVersion"] == __version__
    assert chart["home"] == PROJECT_URL
    assert chart["sources"] == [PROJECT_URL]
    assert chart["maintainers"] == [{"name": "Product Proxy maintainers", "url": PROJECT_URL}]
    # A placeholder address, and said to be one.
    assert "placeholder" in (CHART / "Chart.yaml").read_text(encoding="utf-8")


def _check_timeseries(
    panels: dict[str, dict[str, Any]], expected: dict[str, tuple[str, str, str]]
) -> None:
    """Each titled panel is a time series with that unit, one query and its legend."""
    for title, (unit, expression, legend) in expected.items():
        panel = panels[title]
        assert panel["type"] == "timeseries"
        assert panel["fieldConfig"]["defaults"]["unit"] == unit
        (target,) = panel["targets"]
        assert target["expr"] == expression, title
        assert target["legendFormat"] == legend
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert target.get("datasource", panel["datasource"]) == panel["datasource"]
