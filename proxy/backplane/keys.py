"""Every shared key the service uses, built in one place.

Keys carry the deployment's prefix and a hash of upstream URL and client id, so deployments
or 1NCE accounts sharing one Redis never see each other's catalog or token. The account hash
is a Redis Cluster hash tag (``{...}``): all of one deployment's keys live in one slot, so
whatever must be atomic across them stays on one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.backplane.interface import LogKeys

# Bump when a stored format changes incompatibly (the token's gained its lifetime in v2).
_SCHEMA = "v1"
_TOKEN_SCHEMA = "v2"  # noqa: S105 - a key version, not a secret


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The key names for one deployment and account."""

    prefix: str
    account: str

    @property
    def _base(self) -> str:
        return f"{self.prefix}:{{{self.account}}}"

    @property
    def catalog(self) -> str:
        """Where the catalog entry lives."""
        return f"{self._base}:catalog:{_SCHEMA}"

    @property
    def catalog_lock(self) -> str:
        """The lock a replica holds while it fetches the catalog for the deployment."""
        return f"{self.catalog}:lock"

    @property
    def token(self) -> str:
        """Where the shared OAuth token lives."""
        return f"{self._base}:token:{_TOKEN_SCHEMA}"

    @property
    def token_lock(self) -> str:
        """The lock a replica holds while it fetches a token for the deployment."""
        return f"{self.token}:lock"

    @property
    def admin_refresh(self) -> str:
        """Marks a recent admin refresh, so the deployment allows one per interval."""
        return f"{self.catalog}:admin-refresh"

    def rate_window(self, endpoint: str) -> str:
        """Exists while the upstream's Retry-After window for ``endpoint`` lasts."""
        return f"{self._base}:rate-window:{endpoint}"

    @property
    def history(self) -> str:
        """A hash: the history's epoch, its last version number and the bytes it keeps."""
        return f"{self._base}:history:{_SCHEMA}"

    @property
    def history_versions(self) -> str:
        """A list of the kept version records, newest first."""
        return f"{self.history}:versions"

    @property
    def history_snapshots(self) -> str:
        """A hash: version number to that version's catalog (compressed)."""
        return f"{self.history}:snapshots"

    @property
    def history_log(self) -> LogKeys:
        """The catalog versions as a numbered log: head, records and snapshots."""
        return LogKeys(
            name="history",
            head=self.history,
            items=self.history_versions,
            snapshots=self.history_snapshots,
        )

    def webhook_claim(self, epoch: str, version: int) -> str:
        """Exists once a replica has taken the delivery of one version's webhooks."""
        return f"{self.history}:webhook:{epoch}:{version}"

    @property
    def events(self) -> str:
        """The pub/sub channel on which replicas announce stored catalogs and tokens."""
        return f"{self._base}:events"
