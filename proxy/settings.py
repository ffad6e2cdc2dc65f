"""Service configuration, read from ``PROXY_*`` environment variables and an optional ``.env``."""

from __future__ import annotations

import hashlib
import importlib.util
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_UPSTREAM_URL = "https://api.1nce.com/management-api"
_SECRET_FIELDS = frozenset(
    {
        "client_secret",
        "api_keys",
        "admin_token",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
    }
)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


class Settings(BaseSettings):
    """Everything the service can be told; built once in ``__main__`` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="PROXY_",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    upstream_url: str = DEFAULT_UPSTREAM_URL
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redis_url: SecretStr | None = None
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = ()
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: SecretStr | None = None
    redis_password: SecretStr | None = None
    redis_db: int = Field(default=0, ge=0)
    key_prefix: str = Field(default="1nce-proxy", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    cache_ttl: float = Field(default=300, gt=0)
    stale_ttl: float = Field(default=86400, ge=0)
    upstream_timeout: float = Field(default=10, gt=0, le=300)
    upstream_retries: int = Field(default=2, ge=0, le=10)
    redis_timeout: float = Field(default=0.25, gt=0, le=10)
    lock_timeout: float = Field(default=15, gt=0, le=600)
    token_refresh_margin: float = Field(default=120, ge=0)
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: Literal["all", "errors", "off"] = "errors"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    admin_token: SecretStr | None = None
    admin_refresh_interval: float = Field(default=5, ge=0, le=3600)
    shutdown_grace: float = Field(default=20, gt=0, le=300)
    shutdown_delay: float = Field(default=0, ge=0, le=300)
    warmup: bool = False
    # uvloop when installed (it is a dependency on Linux and macOS): the hit path measured
    # faster with it (README, "Speed"); asyncio stays selectable for debugging.
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

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (tuple, list)):
            for address in value:
                host, _, port = str(address).rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"{address!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if self.redis_sentinels and self.redis_url is not None:
            raise ValueError(
                "PROXY_REDIS_URL and PROXY_REDIS_SENTINELS exclude each other; "
                "with Sentinel, use PROXY_REDIS_PASSWORD and PROXY_REDIS_DB"
            )
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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
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
    def account_hash(self) -> str:
        """Short digest of upstream URL and client id that scopes shared cache and token keys."""
        material = f"{self.upstream_url}\0{self.client_id or ''}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


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


def uvloop_available() -> bool:
    """Whether the uvloop package can be imported here."""
    return importlib.util.find_spec("uvloop") is not None
