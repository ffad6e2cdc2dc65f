"""Where the deployment's catalog versions are numbered and kept: the interface, in memory."""

from __future__ import annotations

import asyncio
import secrets
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from proxy.history.records import VersionRecord

# Catalog JSON shrinks several times over; level 6 is zlib's usual speed/size balance.
_COMPRESSION_LEVEL = 6


@dataclass(frozen=True, slots=True)
class History:
    """The kept versions, newest first, the epoch they number, and the last number given.

    ``epoch`` is None while nothing was ever recorded (or the store lost everything);
    ``last`` is the number the next version follows, even if its record was lost.
    """

    epoch: str | None
    last: int
    versions: tuple[VersionRecord, ...]

    @property
    def current(self) -> VersionRecord | None:
        """The newest version kept, if any."""
        return self.versions[0] if self.versions else None

    @property
    def oldest(self) -> VersionRecord | None:
        """The oldest version kept, if any."""
        return self.versions[-1] if self.versions else None

    def after(self, version: int) -> list[VersionRecord]:
        """Return the kept versions numbered above ``version``, oldest first."""
        return [record for record in reversed(self.versions) if record.version > version]


EMPTY = History(epoch=None, last=0, versions=())


class Appended(Enum):
    """What an append did: recorded the version, or lost a race and changed nothing."""

    RECORDED = "recorded"
    CONFLICT = "conflict"


class VersionStore(Protocol):
    """Numbers and keeps catalog versions for a deployment; every call is bounded in time.

    A failed call answers None ("unknown"), like the backplane it lives on.
    """

    async def read(self, count: int) -> History | None:
        """Return the epoch, last number and up to ``count`` newest records."""
        ...

    async def snapshot(self, version: int) -> bytes | None:
        """Return the compressed catalog of ``version``; None when gone or unreadable."""
        ...

    async def append(
        self, expected: History, record: VersionRecord, snapshot: bytes
    ) -> tuple[Appended, str] | None:
        """Record ``record`` as the next version if the history is still ``expected``.

        ``record.version`` must be ``expected.last + 1``; when ``expected.epoch`` is None a
        new epoch starts (and anything left of an older one is dropped). Returns the outcome
        and the epoch, or None when the store could not be asked. The oldest versions go
        while more than the limits are kept; the newest always stays.
        """
        ...


def new_epoch() -> str:
    """Return a fresh epoch id: random, so no two histories ever share one."""
    return secrets.token_hex(6)


async def compress(body: bytes) -> bytes:
    """Compress a catalog for keeping, off the event loop (a catalog may be megabytes)."""
    return await asyncio.to_thread(zlib.compress, body, _COMPRESSION_LEVEL)


async def decompress(snapshot: bytes, limit: int) -> bytes | None:
    """Inflate a kept catalog of at most ``limit`` bytes; None when it is not one."""
    return await asyncio.to_thread(_inflate, snapshot, limit)


def _inflate(snapshot: bytes, limit: int) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(snapshot, limit)
    except zlib.error:
        return None
    # More than the limit, or a truncated stream: not something this service wrote.
    if inflater.unconsumed_tail or not inflater.eof:
        return None
    return body


class MemoryVersions:
    """:class:`VersionStore` in this process: one replica alone, no Redis."""

    def __init__(self, *, max_versions: int, max_bytes: int) -> None:
        """Keep at most ``max_versions`` records and ``max_bytes`` of snapshots."""
        self._max_versions = max_versions
        self._max_bytes = max_bytes
        self._epoch: str | None = None
        self._last = 0
        self._records: list[VersionRecord] = []
        self._snapshots: dict[int, bytes] = {}

    async def read(self, count: int) -> History:
        """Return the history as kept."""
        return History(self._epoch, self._last, tuple(self._records[:count]))

    async def snapshot(self, version: int) -> bytes | None:
        """Return a kept snapshot."""
        return self._snapshots.get(version)

    async def append(
        self, expected: History, record: VersionRecord, snapshot: bytes
    ) -> tuple[Appended, str]:
        """Record the next version, trimming the oldest past the limits."""
        if expected.epoch != self._epoch or expected.last != self._last:
            return Appended.CONFLICT, self._epoch or ""
        if self._epoch is None:
            self._epoch = new_epoch()
        self._last = record.version
        self._records.insert(0, record)
        self._snapshots[record.version] = snapshot
        kept = sum(len(kept) for kept in self._snapshots.values())
        while len(self._records) > 1 and (
            len(self._records) > self._max_versions or kept > self._max_bytes
        ):
            gone = self._records.pop()
            kept -= len(self._snapshots.pop(gone.version, b""))
        return Appended.RECORDED, self._epoch
