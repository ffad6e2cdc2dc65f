"""Where the deployment's catalog versions are numbered and kept: a log on the backplane."""

from __future__ import annotations

import asyncio
import secrets
import zlib
from dataclasses import dataclass

from proxy.backplane.interface import Appended, Backplane, LogAppend, LogKeys
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


class Versions:
    """Numbers and keeps a deployment's catalog versions in a numbered log on the backplane.

    Every replica on one backplane shares one numbering (the log's compare-and-append), in
    memory, on Redis, or on any backend that keeps the protocol. A failed call answers None
    ("unknown"), like the backplane; a record that does not decode is skipped.
    """

    def __init__(
        self, backplane: Backplane, log: LogKeys, *, max_versions: int, max_bytes: int
    ) -> None:
        """Keep at most ``max_versions`` versions and ``max_bytes`` of snapshots in ``log``."""
        self._backplane = backplane
        self._log = log
        self.max_versions = max_versions
        """The most versions kept."""
        self._max_bytes = max_bytes

    async def read(self, count: int) -> History | None:
        """Return the epoch, last number and up to ``count`` newest records."""
        state = await self._backplane.log_read(self._log, count)
        if state is None:
            return None
        records = []
        for item in state.items:
            try:
                records.append(VersionRecord.decode(item))
            except ValueError:
                continue
        return History(epoch=state.epoch, last=state.last, versions=tuple(records))

    async def snapshot(self, version: int) -> bytes | None:
        """Return the compressed catalog of ``version``; None when gone or unreadable."""
        return await self._backplane.log_snapshot(self._log, version)

    async def append(
        self, expected: History, record: VersionRecord, snapshot: bytes
    ) -> tuple[Appended, str] | None:
        """Record ``record`` as the next version if the history is still ``expected``.

        ``record.version`` must be ``expected.last + 1``; when ``expected.epoch`` is None a
        new epoch starts (and anything left of an older one is dropped). Returns the outcome
        and the epoch, or None when the store could not be asked. The oldest versions go
        while more than the limits are kept; the newest always stays.
        """
        append = LogAppend(
            epoch=expected.epoch,
            last=expected.last,
            new_epoch=new_epoch(),
            item=record.encode(),
            snapshot=snapshot,
            max_items=self.max_versions,
            max_bytes=self._max_bytes,
        )
        return await self._backplane.log_append(self._log, append)


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
