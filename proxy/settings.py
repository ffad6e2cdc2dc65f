"""Service configuration, read from ``PROXY_*`` environment variables and an optional ``.env``."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from proxy.callers.keys import KeyEntryError, parse_entries, read_key_file

DEFAULT_UPSTREAM_URL = "https://api.1nce.com/management-api"
_SECRET_FIELDS = frozenset(
    {
        "client_secret",
        "api_keys",
        "admin_token",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
        "webhook_secret",
        "webhook_urls",
    }
)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_HOUR = 3600
_DAY = 86400
# An empty value is how an environment (or a chart) says "not set"; a value that is only
# whitespace is a slip (a stray space, an unfilled template) that must not quietly turn a
# protection off or leave it on with an empty secret.
_UNSET = "Empty: unset; blank (only whitespace): a configuration error."
_LIST = "Empty: none; blank, or with a blank entry: a configuration error."
_BLANK = "is blank (only whitespace); leave it empty to unset it"

# A duration in seconds. inf and nan pass a lower bound alone and then break arithmetic far
# from here (PROXY_CACHE_TTL=inf made every catalog request a 500), so every one is finite.
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class Settings(BaseSettings):
    """Everything the service can be told; built once in ``__main__`` and passed down.

    Every duration is a finite number of seconds within a bound a careful operator would
    accept. For secrets, URLs and lists an empty value means "not set"; a value that is not
    empty but only whitespace, or a list with a blank entry, is refused, so a slip never opens
    the API or turns on the admin API with an empty token.
    """

    # The upstream's stable name in the key hash, where its URL is not stable (pointed_at).
    _upstream_name: str | None = PrivateAttr(default=None)

    model_config = SettingsConfigDict(
        env_prefix="PROXY_",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    upstream_url: str = DEFAULT_UPSTREAM_URL
    client_id: str | None = Field(default=None, description=f"The 1NCE API client id. {_UNSET}")
    client_secret: SecretStr | None = Field(
        default=None, description=f"The 1NCE API client secret. {_UNSET}"
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description=f"redis://, rediss:// or unix:// URL of a shared cache. {_UNSET}",
    )
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=f"Comma-separated host:port of each Sentinel. {_LIST}",
    )
    redis_cluster_nodes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=f"Comma-separated host:port seed nodes of a Redis Cluster. {_LIST}",
    )
    redis_tls: bool = Field(
        default=False,
        description="TLS to the Redis Cluster nodes (a URL says it with rediss://).",
    )
    redis_ca_file: str | None = Field(
        default=None,
        description=(
            "PEM CA bundle that verifies the Redis server's certificate (rediss:// URL, or "
            f"Cluster with PROXY_REDIS_TLS). {_UNSET} Unset: the system's CAs."
        ),
    )
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description=f"Password of the Sentinels. {_UNSET}"
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description=f"Password of the Sentinel-managed master or the Cluster nodes. {_UNSET}",
    )
    redis_db: int = Field(default=0, ge=0)
    key_prefix: str = Field(default="1nce-proxy", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    cache_ttl: Seconds = Field(
        default=300, gt=0, le=7 * _DAY, description="Seconds a catalog is fresh (at most 7 days)."
    )
    stale_ttl: Seconds = Field(
        default=_DAY,
        ge=0,
        le=30 * _DAY,
        description="Seconds a catalog may be served stale after that (at most 30 days).",
    )
    upstream_timeout: Seconds = Field(
        default=10,
        gt=0,
        le=300,
        description="Seconds for one whole upstream fetch (token, retries, products).",
    )
    upstream_retries: int = Field(default=2, ge=0, le=10)
    # The upstream's rate window is 5 minutes; no Retry-After may hold us off longer.
    retry_after_max: Seconds = Field(
        default=300, gt=0, le=_HOUR, description="Longest upstream Retry-After honoured."
    )
    # Today's catalog is under 10 KB; anything near this bound is a fault, not a catalog.
    upstream_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    redis_timeout: Seconds = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Seconds for any one Redis call, connecting included.",
    )
    replica_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description=(
            "This replica's name: in lock values (who is fetching) and, on a Redis Cluster, "
            "what decides which node it subscribes on first, so replicas spread their "
            "subscriptions over the nodes. Default: host name and process id."
        ),
    )
    lock_timeout: Seconds = Field(
        default=15,
        gt=0,
        le=600,
        description="Seconds a replica's fetch lock lives; longer than PROXY_UPSTREAM_TIMEOUT.",
    )
    token_refresh_margin: Seconds = Field(
        default=120,
        ge=0,
        lt=_HOUR,
        description="Seconds before expiry a token is replaced (under an hour, its usual life).",
    )
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: Literal["all", "errors", "off"] = "errors"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated name:key entries (or bare keys, named by a fingerprint); callers "
            f"send Authorization: Bearer <key>. Each is trimmed. {_LIST} No keys: the API is open."
        ),
    )
    api_keys_file: str | None = Field(
        default=None,
        description=(
            "File of API keys, one name:key (or bare key) a line or comma-separated, re-read "
            "when its content changes; it wins over PROXY_API_KEYS. While it is set the API is "
            "never open: a file with no keys refuses every caller. Unusable at start-up: exit "
            "2; later: the keys last read from it stay in force (docs/configuration.md). "
            f"{_UNSET}"
        ),
    )
    api_keys_reload_interval: Seconds = Field(
        default=5,
        gt=0,
        le=300,
        description="Seconds between checks of PROXY_API_KEYS_FILE for a change.",
    )
    management_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "Serve /metrics, /healthz and /readyz on this port, and only there. "
            f"{_UNSET} Unset: they share PROXY_PORT with the API."
        ),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token of /admin/*, trimmed. {_UNSET} Unset: the admin API is off.",
    )
    admin_refresh_interval: Seconds = Field(
        default=5,
        ge=0,
        le=_HOUR,
        description="Minimum seconds between admin refreshes, deployment-wide.",
    )
    shutdown_grace: Seconds = Field(
        default=20,
        gt=0,
        le=300,
        description="Seconds in-flight requests get to finish after SIGTERM.",
    )
    shutdown_delay: Seconds = Field(
        default=0,
        ge=0,
        le=300,
        description="Seconds to keep serving after SIGTERM with readiness already false.",
    )
    warmup: bool = False
    history_versions: int = Field(
        default=50,
        ge=2,
        le=1000,
        description="Catalog versions kept deployment-wide for /api/v1/changes and streams.",
    )
    history_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024 * 1024,
        le=256 * 1024 * 1024,
        description=(
            "Bytes of kept catalogs (compressed) at most; the oldest versions go first, "
            "the newest is always kept."
        ),
    )
    max_streams: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Event streams (/api/v1/events) open at once per replica; beyond, 503.",
    )
    stream_keepalive: Seconds = Field(
        default=15,
        gt=0,
        le=300,
        description="Seconds between keep-alive comments on an idle event stream.",
    )
    stream_max_age: Seconds = Field(
        default=3600,
        ge=1,
        le=_DAY,
        description=(
            "Seconds an event stream stays open (less up to a tenth, at random); the client "
            "reconnects with Last-Event-ID, so streams spread over replicas added since."
        ),
    )
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated http(s) URLs that get a signed POST for each new catalog "
            f"version (docs/webhooks.md). {_LIST}"
        ),
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key of the webhooks' HMAC-SHA256 signature; required with PROXY_WEBHOOK_URLS. "
            f"{_UNSET}"
        ),
    )
    webhook_timeout: Seconds = Field(
        default=5, gt=0, le=60, description="Seconds one webhook attempt may take."
    )
    webhook_retry_for: Seconds = Field(
        default=300,
        ge=0,
        le=_DAY,
        description="Seconds a failing webhook delivery is retried (with backoff), then dropped.",
    )
    # uvloop when installed (it is a dependency on Linux and macOS): the hit path measured
    # faster with it (docs/speed.md); asyncio stays selectable for debugging.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("upstream_url")
    @classmethod
    def _check_upstream_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator(
        "client_id",
        "client_secret",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
        "admin_token",
        "webhook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        if not text:
            return None
        if not text.strip():
            raise ValueError(_BLANK)
        return value

    @field_validator("admin_token")
    @classmethod
    def _trim_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Header values lose surrounding whitespace on the way in, so an untrimmed token
        # (a trailing newline from a file) could never match.
        if value is None:
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _check_key_file(cls, value: str | None) -> str | None:
        # Read at start-up: a mistyped path or a broken file would otherwise refuse every
        # caller (the file wins over PROXY_API_KEYS) from a process that looks healthy.
        if value is None:
            return value
        try:
            data = Path(value).read_bytes()
        except OSError:
            raise ValueError("is not a readable file") from None
        try:
            read_key_file(data)
        except KeyEntryError as exc:
            raise ValueError(f"is not a usable key file: {exc}") from None
        return value

    @field_validator("redis_ca_file", "api_keys_file", "management_port", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value:
            return None
        return value

    @field_validator("redis_ca_file")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        # Checked here, not on the first connection: a missing bundle would otherwise look
        # like a Redis outage (/readyz "degraded") instead of the slip it is.
        if value is None:
            return None
        if not value.strip():
            raise ValueError(_BLANK)
        try:
            with Path(value).open("rb") as bundle:
                head = bundle.read(4096)
        except OSError as exc:
            raise ValueError(f"cannot read it ({exc.strerror or exc})") from None
        if b"-----BEGIN CERTIFICATE-----" not in head:
            raise ValueError("is not a PEM certificate bundle")
        return value

    @field_validator(
        "redis_sentinels", "redis_cluster_nodes", "api_keys", "webhook_urls", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        return _entries(value) if isinstance(value, str) else value

    @field_validator("redis_sentinels", "redis_cluster_nodes")
    @classmethod
    def _check_sentinels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _refuse_blank_entry([address.strip() for address in value])
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhook_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _refuse_blank_entry([url.strip() for url in value])
        for url in value:
            problem = _webhook_url_problem(url.strip())
            if problem is not None:
                # The URL itself is not echoed: its path or query may hold a secret.
                raise ValueError(f"entry {value.index(url) + 1}: {problem}")
        return tuple(url.strip() for url in value)

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        _refuse_blank_entry([key.get_secret_value().strip() for key in value])
        # name:key entries: a bad name, an empty key or a key listed twice stops the start.
        parse_entries(key.get_secret_value() for key in value)
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        modes = [
            name
            for name, given in (
                ("PROXY_REDIS_URL", self.redis_url is not None),
                ("PROXY_REDIS_SENTINELS", bool(self.redis_sentinels)),
                ("PROXY_REDIS_CLUSTER_NODES", bool(self.redis_cluster_nodes)),
            )
            if given
        ]
        if len(modes) > 1:
            raise ValueError(
                f"{' and '.join(modes)} exclude each other; with Sentinel or Cluster, "
                "use PROXY_REDIS_PASSWORD (and PROXY_REDIS_DB for Sentinel)"
            )
        if self.redis_ca_file is not None and not self.redis_uses_tls:
            raise ValueError(
                "PROXY_REDIS_CA_FILE needs TLS to Redis: a rediss:// PROXY_REDIS_URL, or "
                "PROXY_REDIS_CLUSTER_NODES with PROXY_REDIS_TLS=true"
            )
        if self.management_port is not None and self.management_port == self.port:
            raise ValueError("PROXY_MANAGEMENT_PORT must differ from PROXY_PORT")
        if self.webhook_urls and self.webhook_secret is None:
            # Receivers must be able to tell our posts from anyone else's.
            raise ValueError("PROXY_WEBHOOK_URLS needs PROXY_WEBHOOK_SECRET to sign with")
        if self.lock_timeout <= self.upstream_timeout:
            # A lock that expires mid-fetch lets a second replica fetch the same catalog.
            raise ValueError("PROXY_LOCK_TIMEOUT must be longer than PROXY_UPSTREAM_TIMEOUT")
        return self

    @field_validator("log_level", "log_format", "access_log", "event_loop", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("event_loop")
    @classmethod
    def _check_event_loop(cls, value: str) -> str:
        if value == "uvloop" and not uvloop_available():
            raise ValueError("uvloop is not installed")
        return value

    def missing_credentials(self) -> list[str]:
        """Name each credential a real (non-sandbox) deployment needs but lacks."""
        missing = []
        if not self.client_id:
            missing.append("PROXY_CLIENT_ID: required (your 1NCE API client id) unless --sandbox")
        if self.client_secret is None or not self.client_secret.get_secret_value():
            missing.append(
                "PROXY_CLIENT_SECRET: required (your 1NCE API client secret) unless --sandbox"
            )
        return missing

    @property
    def redis_uses_tls(self) -> bool:
        """Whether connections to Redis use TLS (a rediss:// URL, or Cluster with TLS on)."""
        if self.redis_url is not None:
            return urlsplit(self.redis_url.get_secret_value()).scheme == "rediss"
        return bool(self.redis_cluster_nodes) and self.redis_tls

    @property
    def account_hash(self) -> str:
        """Short digest of upstream and client id that scopes shared cache and token keys.

        The upstream is its URL, or the name it was given by :meth:`pointed_at` (the emulator,
        whose port changes at every start, is one upstream for as long as it is the emulator).
        """
        upstream = self._upstream_name or self.upstream_url
        material = f"{upstream}\0{self.client_id or ''}".encode()
        return hashlib.sha256(material).hexdigest()[:16]

    def pointed_at(
        self, upstream_url: str, *, name: str, client_id: str, client_secret: SecretStr
    ) -> Settings:
        """Return a copy that calls ``upstream_url`` with these credentials, keyed by ``name``."""
        copy = self.model_copy(
            update={
                "upstream_url": upstream_url,
                "client_id": client_id,
                "client_secret": client_secret,
            }
        )
        copy._upstream_name = name  # noqa: SLF001 - its own class, on a fresh copy
        return copy


def describe_errors(errors: list[ErrorDetails]) -> list[str]:
    """Turn validation errors into one line per bad setting, never echoing a secret."""
    lines = []
    for error in errors:
        if not error["loc"]:
            # A rule across settings: its message names the variables itself.
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        line = f"PROXY_{field.upper()}: {error['msg']}"
        if field not in _SECRET_FIELDS and "input" in error:
            line += f" (got {error['input']!r})"
        lines.append(line)
    return lines


def _entries(value: str) -> tuple[str, ...]:
    """Split a comma-separated setting into trimmed entries; empty means no entries.

    Blank entries are kept, for :func:`_refuse_blank_entry`.
    """
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(","))


# A host name's characters, or an IP address's (IPv6 inside brackets, which urlsplit removes).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


def _webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive webhooks (never quoting it), or None when it can."""
    # urlsplit drops tabs and newlines silently; an entry holding one was not meant as written.
    if any(character.isspace() or not character.isprintable() for character in url):
        return "must not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.fragment:
        return "must not have a #fragment"
    if not _HOST.fullmatch(parts.hostname):
        return "its host must be a host name or an IP address"
    try:
        port = parts.port
    except ValueError:
        port = 0
    return "its port must be a number from 1 to 65535" if port == 0 else None


def _refuse_blank_entry(entries: list[str]) -> None:
    """Refuse a list with an entry that is empty after trimming, saying which (never what)."""
    for position, entry in enumerate(entries, start=1):
        if not entry:
            raise ValueError(
                f"entry {position} of {len(entries)} is blank (a stray comma or space?); "
                "leave the whole value empty for none"
            )


def secrets_dir_problem(path: str) -> str | None:
    """Say why ``path`` cannot serve as the secrets directory, or None when it can."""
    directory = Path(path)
    if not directory.is_dir():
        return f"{path!r} is not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return f"{path!r} cannot be read"
    return None


def uvloop_available() -> bool:
    """Whether the uvloop package can be imported here."""
    return importlib.util.find_spec("uvloop") is not None


SETTINGS = web.AppKey("settings", Settings)
"""Where an application keeps its settings."""
