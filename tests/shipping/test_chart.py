"""The Helm chart (helm/product-proxy): lint, schema, renders, validation, security and alerts.

Tools come from PATH or ``.tools`` (``scripts/tools-helm.sh`` puts helm in ``.tools/bin`` and
kubernetes-validate and checkov in ``.tools/venv``). A missing tool skips its tests locally and
fails them in CI (``CI=true``); promtool is optional (its checks run when it is there).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.support.tools import tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "product-proxy"
HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "values-everything.yaml"
REDIS_URL = HERE / "values-redis-url.yaml"
SENTINEL_TLS = HERE / "values-sentinel-tls.yaml"
REDIS_CLUSTER = HERE / "values-redis-cluster.yaml"
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
    containers = pod_spec(objects)["containers"]
    assert len(containers) == 1
    return cast("dict[str, Any]", containers[0])


def env(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(objects).get("env", [])}


def settings(objects: list[Manifest]) -> dict[str, str]:
    """The ConfigMap the container reads all of (envFrom)."""
    names = [ref["configMapRef"]["name"] for ref in container(objects)["envFrom"]]
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in names]
    assert len(maps) == 1
    return cast("dict[str, str]", maps[0]["data"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


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
def renders(
    default_objects: list[Manifest],
    everything_objects: list[Manifest],
    redis_url_objects: list[Manifest],
    sentinel_tls_objects: list[Manifest],
    redis_cluster_objects: list[Manifest],
) -> dict[str, list[Manifest]]:
    return {
        "default": default_objects,
        "everything": everything_objects,
        "redis-url": redis_url_objects,
        "sentinel-tls": sentinel_tls_objects,
        "redis-cluster": redis_cluster_objects,
    }


@pytest.fixture(scope="module")
def checkov_result(
    tmp_path_factory: pytest.TempPathFactory, renders: dict[str, list[Manifest]]
) -> subprocess.CompletedProcess[str]:
    """One checkov run (it is slow) over every render, with the chart's documented skips."""
    checkov = tool("checkov")
    directory = tmp_path_factory.mktemp("checkov")
    for name, objects in renders.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    args = [checkov, "--directory", str(directory), "--framework", "kubernetes"]
    args += ["--config-file", str(CHART / ".checkov.yaml"), "--compact", "--quiet"]
    return run(args, timeout=180)


# helm lint and the values schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [(), (EVERYTHING,), (REDIS_URL,), (SENTINEL_TLS,), (REDIS_CLUSTER,)],
    ids=["default", "everything", "redis-url", "sentinel-tls", "redis-cluster"],
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
    ],
)
def test_a_typo_in_values_is_rejected_by_name(assignment: str, named: str) -> None:
    result = helm(*template_args("typo", sets=(assignment,)))
    assert result.returncode != 0
    assert f"Additional property {named} is not allowed" in result.stderr, result.stderr


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
    # No credentials given: no Secret (the pods say what is missing, NOTES.txt warns).
    assert kinds(default_objects) == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_everything_render_has_every_object(everything_objects: list[Manifest]) -> None:
    assert kinds(everything_objects) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
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
    for name, objects in renders.items():
        release = {
            "default": "pp",
            "everything": "everything",
            "redis-url": "cache",
            "sentinel-tls": "tls",
            "redis-cluster": "shards",
        }[name]
        for obj in objects:
            where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
            labels = obj["metadata"]["labels"]
            for label in RECOMMENDED_LABELS:
                assert labels.get(label), f"{where} lacks {label}"
            assert labels["app.kubernetes.io/name"] == "product-proxy", where
            assert labels["app.kubernetes.io/instance"] == release, where
            assert labels["app.kubernetes.io/version"] == chart["appVersion"], where
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
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
        ]


# The pod -------------------------------------------------------------------------------------


def test_pod_and_container_are_restricted(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        spec = pod_spec(objects)
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] == 10001
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container(objects)["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == 10001
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        # The read-only root still gets a writable /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - a mount path, not a file
        account = [o for o in objects if o["kind"] == "ServiceAccount"]
        assert account[0]["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == account[0]["metadata"]["name"]


def test_probes_ask_the_service_on_its_port(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        proxy = container(objects)
        assert proxy["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert settings(objects)["PROXY_PORT"] == "8080"
        paths = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
            "startupProbe": "/healthz",
        }
        for probe, path in paths.items():
            assert proxy[probe]["httpGet"] == {"path": path, "port": "http"}, probe


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


def test_chart_secret_holds_the_set_values_and_env_reads_them(
    redis_url_objects: list[Manifest],
) -> None:
    secret = one(redis_url_objects, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "client-id": "example-client-id",
        "client-secret": "example-client-secret",
        "api-keys": "key-for-billing,key-for-provisioning",
        "admin-token": "example-admin-token",
        "redis-url": "redis://:example-password@redis-master.data.svc:6379/0",
    }
    variables = env(redis_url_objects)
    expected = {
        "PROXY_CLIENT_ID": "client-id",
        "PROXY_CLIENT_SECRET": "client-secret",
        "PROXY_API_KEYS": "api-keys",
        "PROXY_ADMIN_TOKEN": "admin-token",
        "PROXY_REDIS_URL": "redis-url",
    }
    assert set(variables) == set(expected)
    for name, key in expected.items():
        ref = variables[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": key}, name
    # Secrets never sit in the ConfigMap.
    assert not set(expected) & set(settings(redis_url_objects))
    assert "PROXY_REDIS_SENTINELS" not in settings(redis_url_objects)


def test_existing_secret_is_referenced_and_no_secret_rendered(
    everything_objects: list[Manifest],
) -> None:
    assert "Secret" not in kinds(everything_objects)
    variables = env(everything_objects)
    refs = {
        name: item["valueFrom"]["secretKeyRef"]
        for name, item in variables.items()
        if "valueFrom" in item
    }
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
    }
    assert variables["TZ"] == {"name": "TZ", "value": "UTC"}
    annotations = deployment(everything_objects)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    assert "checksum/config" in annotations


def api_keys_ref(*sets: str) -> dict[str, Any]:
    """The secretKeyRef of PROXY_API_KEYS in a render with these --set assignments."""
    return cast(
        "dict[str, Any]",
        env(render("keys", sets=sets))["PROXY_API_KEYS"]["valueFrom"]["secretKeyRef"],
    )


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
    assert "PROXY_API_KEYS" not in env(objects)
    assert "PROXY_API_KEYS" not in env(render("keys", sets=("requireApiKeys=false",)))


def test_sentinel_tls_values_require_the_api_keys(sentinel_tls_objects: list[Manifest]) -> None:
    refs = {
        name: item["valueFrom"]["secretKeyRef"]
        for name, item in env(sentinel_tls_objects).items()
        if "valueFrom" in item
    }
    assert refs["PROXY_API_KEYS"] == {"name": "proxy-credentials", "key": "api-keys"}
    assert refs["PROXY_ADMIN_TOKEN"]["optional"] is True


def test_existing_secret_in_url_mode_requires_the_url_key() -> None:
    objects = render("cache", sets=("existingSecret.name=creds", "redis.mode=url"))
    assert env(objects)["PROXY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "creds",
        "key": "redis-url",
    }
    assert "PROXY_REDIS_PASSWORD" not in env(objects)


def test_sentinel_mode_sets_the_sentinels(everything_objects: list[Manifest]) -> None:
    config = settings(everything_objects)
    assert config["PROXY_REDIS_SENTINELS"] == ",".join(
        f"redis-node-{n}.redis-headless.data.svc:26379" for n in range(3)
    )
    assert config["PROXY_REDIS_SENTINEL_MASTER"] == "mymaster"
    assert config["PROXY_REDIS_DB"] == "2"
    assert "PROXY_REDIS_URL" not in env(everything_objects)
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
    assert env(objects)["PROXY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "redis-password",
    }
    assert "PROXY_REDIS_SENTINEL_PASSWORD" not in env(objects)
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
    variables = env(redis_cluster_objects)
    assert variables["PROXY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
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
    variables = env(objects)
    # The nodes' password is an optional key of the Secret, as with Sentinel.
    assert variables["PROXY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
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
    assert len(spec["ingress"]) == 2  # callers, then Prometheus
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert rule["from"]
    allowed = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP"), (443, "TCP")} <= allowed
    assert all(rule.get("to") for rule in spec["egress"])


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
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 8
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in expressions))
    assert all(metric_names(e) for e in expressions), "a panel without a proxy metric"
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
    assert "SUCCESS: 5 rules found" in result.stdout


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


@pytest.mark.timeout(240)  # checkov's first start on a fresh machine is slow
def test_checkov_passes_with_the_documented_skips(
    checkov_result: subprocess.CompletedProcess[str],
) -> None:
    output = checkov_result.stdout + checkov_result.stderr
    assert checkov_result.returncode == 0, output
    assert "Failed checks: 0" in output, output


def test_every_checkov_skip_has_a_reason_here_and_in_the_readme() -> None:
    config = (CHART / ".checkov.yaml").read_text(encoding="utf-8")
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    lines = config.splitlines()
    skips = yaml.safe_load(config)["skip-check"]
    assert skips
    for check in skips:
        index = lines.index(f"  - {check}")
        assert lines[index - 1].lstrip().startswith("#"), f"{check} has no reason"
        assert f"`{check}`" in readme, f"{check} not explained in README.md"
