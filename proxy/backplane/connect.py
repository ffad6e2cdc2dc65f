"""Building the backplane the settings ask for: memory, one Redis (URL), Sentinel, or Cluster."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from proxy.backplane.interface import Backplane
from proxy.backplane.memory import MemoryBackplane
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing

HEALTH_CHECK_INTERVAL = 30
# Connections one process keeps to Redis: reads are coalesced, so few are ever busy.
MAX_CONNECTIONS = 32
# A cluster node's socket timeout, as a share of the call timeout: an attempt on a node that
# stopped answering must end in redis-py's own TimeoutError, which makes the cluster client
# reload its slot map, and leave room for the one retry on the reloaded map. Were it the call
# timeout itself, the backplane's timeout would always cancel the attempt first, a cancellation
# reloads nothing, and the map would point at a frozen master for ever.
CLUSTER_NODE_SHARE = 0.4


class RedisSettings(Protocol):
    """The settings a backplane is built from (``proxy.settings.Settings`` has them all).

    Named here field by field (read-only), so the backplane depends on what it reads, not on
    the whole settings model.
    """

    @property
    def redis_url(self) -> SecretStr | None:
        """``redis://``, ``rediss://`` or ``unix://`` URL of one server."""
        ...

    @property
    def redis_sentinels(self) -> tuple[str, ...]:
        """``host:port`` of each Sentinel."""
        ...

    @property
    def redis_sentinel_master(self) -> str:
        """The master's name at the Sentinels."""
        ...

    @property
    def redis_sentinel_password(self) -> SecretStr | None:
        """The Sentinels' own password."""
        ...

    @property
    def redis_cluster_nodes(self) -> tuple[str, ...]:
        """``host:port`` seed nodes of a Cluster."""
        ...

    @property
    def redis_password(self) -> SecretStr | None:
        """The password of the Redis servers (Sentinel and Cluster)."""
        ...

    @property
    def redis_db(self) -> int:
        """The database number (not on a Cluster)."""
        ...

    @property
    def redis_tls(self) -> bool:
        """TLS to Sentinel or Cluster nodes."""
        ...

    @property
    def redis_ca_file(self) -> str | None:
        """The certificate authorities Redis servers are checked against."""
        ...

    @property
    def redis_uses_tls(self) -> bool:
        """Whether the connection to Redis uses TLS, however the settings ask for it."""
        ...

    @property
    def redis_timeout(self) -> float:
        """The bound of every Redis call."""
        ...


def connect(
    settings: RedisSettings,
    *,
    channel: str,
    metrics: Metrics,
    replica: str = "",
    tracing: Tracing = NO_TRACING,
) -> Backplane:
    """Return the backplane for ``settings``; nothing connects until the first call.

    redis-py's own retries are off: every call is bounded by ``PROXY_REDIS_TIMEOUT`` and a
    failing Redis is handled by the backplane's breaker, so a retry would only stretch the
    wait. ``replica`` names this replica: on a Cluster it picks the node subscribed on first.
    """
    if settings.redis_cluster_nodes:
        return _cluster(
            settings, channel=channel, metrics=metrics, tracing=tracing, replica=replica
        )
    if settings.redis_sentinels:
        return _sentinel(settings, channel=channel, metrics=metrics, tracing=tracing)
    if settings.redis_url is not None:
        return _url(settings, channel=channel, metrics=metrics, tracing=tracing)
    return MemoryBackplane()


def _common(settings: RedisSettings, *, share: float = 1.0) -> dict[str, Any]:
    """Socket timeouts (``share`` of the call timeout) and no retries of redis-py's own."""
    timeout = settings.redis_timeout * share
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }


def _tls(settings: RedisSettings) -> dict[str, Any]:
    """Certificate checks for TLS connections (redis-py verifies by default; made explicit)."""
    if not settings.redis_uses_tls:
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if settings.redis_ca_file is not None:
        options["ssl_ca_certs"] = settings.redis_ca_file
    return options


def _password(settings: RedisSettings) -> str | None:
    password = settings.redis_password
    return password.get_secret_value() if password else None


def _url(
    settings: RedisSettings, *, channel: str, metrics: Metrics, tracing: Tracing
) -> RedisBackplane:
    if settings.redis_url is None:
        raise ValueError("no Redis URL")
    # A burst waits (up to the call timeout) for a pooled connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=MAX_CONNECTIONS,
        timeout=settings.redis_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        **_common(settings),
        **_tls(settings),
    )
    return _single(
        Redis.from_pool(pool), settings, channel=channel, metrics=metrics, tracing=tracing
    )


def _sentinel(
    settings: RedisSettings, *, channel: str, metrics: Metrics, tracing: Tracing
) -> RedisBackplane:
    sentinel_password = settings.redis_sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        [_host_port(address) for address in settings.redis_sentinels],
        sentinel_kwargs={
            **_common(settings),
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
        },
    )
    client = sentinel.master_for(
        settings.redis_sentinel_master,
        db=settings.redis_db,
        password=_password(settings),
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=MAX_CONNECTIONS,
        **_common(settings),
    )

    async def close_sentinels() -> None:
        for each in sentinel.sentinels:
            await each.aclose()

    return _single(
        client,
        settings,
        channel=channel,
        metrics=metrics,
        tracing=tracing,
        close_extra=close_sentinels,
    )


def _single(
    client: Redis,
    settings: RedisSettings,
    *,
    channel: str,
    metrics: Metrics,
    tracing: Tracing,
    close_extra: Callable[[], Awaitable[None]] | None = None,
) -> RedisBackplane:
    """Build a backplane on one data node (by URL, or the master Sentinel names)."""
    return RedisBackplane(
        client,
        channel=channel,
        open_pubsub=lambda: client.pubsub(ignore_subscribe_messages=True),
        timeout=settings.redis_timeout,
        metrics=metrics,
        close_extra=close_extra,
        tracing=tracing,
    )


def _cluster(
    settings: RedisSettings, *, channel: str, metrics: Metrics, tracing: Tracing, replica: str
) -> RedisBackplane:
    seeds = [_host_port(address) for address in settings.redis_cluster_nodes]
    node_kwargs: dict[str, Any] = {
        **_common(settings, share=CLUSTER_NODE_SHARE),
        "password": _password(settings),
        "ssl": settings.redis_tls,
        **_tls(settings),
    }
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        max_connections=MAX_CONNECTIONS,
        # A slot whose master is failing over must not stop the others being served.
        require_full_coverage=False,
        **{
            **node_kwargs,
            # The one retry a cluster needs: a call that finds its node gone (a failover
            # done while this client was idle) reloads the slot map and asks the new master,
            # within the same call timeout, instead of failing and tripping the breaker.
            "retry": Retry(NoBackoff(), 1),
        },
    )
    subscribers = _ClusterSubscribers(
        client, seeds, node_kwargs, first=first_subscription_node(replica)
    )
    return RedisBackplane(
        client,
        channel=channel,
        open_pubsub=subscribers.open,
        timeout=settings.redis_timeout,
        metrics=metrics,
        close_extra=subscribers.close,
        tracing=tracing,
    )


def first_subscription_node(replica: str) -> int:
    """Where ``replica`` starts in the sorted list of a cluster's nodes (taken modulo its size).

    Derived from the name alone (CRC-32), so replicas spread their subscriptions over the
    nodes, one node's loss drops only its share, and each replica's choice can be foreseen.
    """
    return zlib.crc32(replica.encode())


class _ClusterSubscribers:
    """Subscription connections to a cluster, each new one on the next known node.

    Classic PUBLISH is broadcast to every node of a cluster, so a subscription on any node
    hears every announcement; after a failure the listener moves on to another node. The nodes
    are taken in address order from position ``first``.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        seeds: list[tuple[str, int]],
        node_kwargs: dict[str, Any],
        *,
        first: int,
    ) -> None:
        self._cluster = cluster
        self._seeds = seeds
        self._node_kwargs = node_kwargs
        self._turn = itertools.count(first)
        self._clients: dict[tuple[str, int], Redis] = {}

    def open(self) -> PubSub:
        known = [(node.host, int(node.port)) for node in self._cluster.get_nodes()]
        nodes = sorted(set(known)) or sorted(self._seeds)
        address = nodes[next(self._turn) % len(nodes)]
        client = self._clients.get(address)
        if client is None:
            client = Redis(host=address[0], port=address[1], **self._node_kwargs)
            self._clients[address] = client
        return client.pubsub(ignore_subscribe_messages=True)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
