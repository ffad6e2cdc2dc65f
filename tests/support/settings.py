"""Settings and environment for proxies under test, and where the repository is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_settings(upstream_url: str, **overrides: Any) -> Settings:
    """Build settings for a proxy in front of the sandbox, ignoring the developer's environment."""
    values: dict[str, Any] = {
        "upstream_url": upstream_url,
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SecretStr(SANDBOX_CLIENT_SECRET),
        "upstream_timeout": 2.0,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def clean_env() -> dict[str, str]:
    """Return the current environment without ``PROXY_*`` variables, for child processes."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
