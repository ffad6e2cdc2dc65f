"""A 1NCE Management API emulator for tests and demos.

It speaks the upstream protocol (OAuth token endpoint, products endpoint, error bodies), serves a
realistic catalog, checks and expires bearer tokens, and injects faults on demand. On request
its catalog drifts: a fixed cycle of changes, one step every so many seconds. It is standalone:
nothing here depends on the rest of the proxy.
"""

from proxy.sandbox.app import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_STATE,
    SandboxState,
    create_sandbox_app,
    drift_is_valid,
)
from proxy.sandbox.catalog import default_catalog, drift_product, drifted
from proxy.sandbox.faults import Faults

__all__ = [
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_STATE",
    "Faults",
    "SandboxState",
    "create_sandbox_app",
    "default_catalog",
    "drift_is_valid",
    "drift_product",
    "drifted",
]
