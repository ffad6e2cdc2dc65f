"""Reading Server-Sent Events in tests, the way a client library does."""

from __future__ import annotations

import asyncio

import aiohttp


class EventReader:
    """Reads Server-Sent Events off a streaming response, one at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, within: float = 5.0) -> dict[str, str]:
        """Return the next event's fields (``event``, ``id``, ``data``)."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(within):
            while True:
                line = (await self.response.content.readline()).decode()
                if line == "":
                    raise EOFError("the stream ended")
                line = line.rstrip("\n")
                if not line:
                    if "data" in fields:
                        return fields
                    fields = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
