"""The deployment's catalog versions in Redis: numbered and trimmed by one script, atomically."""

from __future__ import annotations

from proxy.backplane.keys import KeySpace
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.history.records import VersionRecord
from proxy.history.store import Appended, History, new_epoch

# KEYS: the history hash, the records list, the snapshots hash. ARGV: how many records.
# Returns {} when there is no history, else {epoch, last, {record...}}.
_READ = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'last')
if not meta[1] then return {} end
return {meta[1], meta[2] or '0', redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)}
"""
# ARGV: expected epoch ('' for none), expected last number, a new epoch id, the record, the
# snapshot, max versions, max bytes. Compare-and-append: a replica that read an older
# history loses the race and changes nothing. Returns {1 recorded | 0 conflict, epoch}.
_APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
    if ARGV[1] ~= '' then return {0, ''} end
    epoch = ARGV[3]
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'last', 0, 'bytes', 0)
elseif epoch ~= ARGV[1] then
    return {0, epoch}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if last ~= tonumber(ARGV[2]) then return {0, epoch} end
last = last + 1
redis.call('HSET', KEYS[1], 'last', last)
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], last, ARGV[5])
local kept = redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[5]))
local max_versions, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
while redis.call('LLEN', KEYS[2]) > 1
    and (redis.call('LLEN', KEYS[2]) > max_versions or kept > max_bytes) do
    local gone = cjson.decode(redis.call('RPOP', KEYS[2]))['version']
    local size = redis.call('HSTRLEN', KEYS[3], gone)
    redis.call('HDEL', KEYS[3], gone)
    kept = redis.call('HINCRBY', KEYS[1], 'bytes', -size)
end
return {1, epoch}
"""


class RedisVersions:
    """:class:`~proxy.history.store.VersionStore` on the deployment's Redis.

    Three keys under the deployment's hash tag (one Cluster slot): a hash with the epoch, the
    last number given and the bytes kept; a list of records, newest first; a hash of
    compressed snapshots by number. Nothing expires: a history outlives any catalog entry.
    If Redis loses the hash (flushed, restarted without persistence, evicted), the next
    version starts a new epoch.
    """

    def __init__(
        self, backplane: RedisBackplane, keys: KeySpace, *, max_versions: int, max_bytes: int
    ) -> None:
        """Keep versions through ``backplane`` under ``keys``, within the limits."""
        self._backplane = backplane
        self._keys = [keys.history, keys.history_versions, keys.history_snapshots]
        self._max_versions = max_versions
        self._max_bytes = max_bytes

    async def read(self, count: int) -> History | None:
        """Return the epoch, last number and up to ``count`` newest records."""
        found = await self._backplane.script("history_read", _READ, self._keys, [count])
        if found is None:
            return None
        if not isinstance(found, list) or not found:
            return History(epoch=None, last=0, versions=())
        epoch, last, raw = found
        records: list[VersionRecord] = []
        for item in raw if isinstance(raw, list) else ():
            try:
                records.append(VersionRecord.decode(item))
            except ValueError:
                continue
        return History(epoch=_text(epoch), last=int(last), versions=tuple(records))

    async def snapshot(self, version: int) -> bytes | None:
        """Return the compressed catalog of ``version``."""
        found = await self._backplane.script(
            "history_snapshot",
            "return redis.call('HGET', KEYS[3], ARGV[1])",
            self._keys,
            [version],
        )
        return found if isinstance(found, bytes) else None

    async def append(
        self, expected: History, record: VersionRecord, snapshot: bytes
    ) -> tuple[Appended, str] | None:
        """Compare-and-append ``record`` and its snapshot; trim past the limits."""
        args: list[bytes | str | int] = [
            expected.epoch or "",
            expected.last,
            new_epoch(),
            record.encode(),
            snapshot,
            self._max_versions,
            self._max_bytes,
        ]
        found = await self._backplane.script("history_append", _APPEND, self._keys, args)
        if not isinstance(found, list) or len(found) != 2:
            return None
        outcome = Appended.RECORDED if found[0] == 1 else Appended.CONFLICT
        return outcome, _text(found[1])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
