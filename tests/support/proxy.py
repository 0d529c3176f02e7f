"""A loopback TCP proxy that a test can cut and restore, to take the broker off the network.

A cut is a network partition: the broker goes on running (its own restarts are
``KafkaBroker.kill``, ``stop`` and ``start``) while no client reaches it. The broker
advertises the proxy's address, so every client connection (bootstrap and per-node) passes
through it.
The proxy runs its own event loop in a thread, so it serves the tests' clients and the
worker processes alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self


class CuttableProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port until cut."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while not self._cut and (data := await reader.read(65536)):
                writer.write(data)
                await writer.drain()
        self._writers.discard(writer)
        writer.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones (new ones are closed at once)."""

        def drop() -> None:
            self._cut = True
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(drop)

    def restore(self) -> None:
        """Accept and forward connections again."""

        def reopen() -> None:
            self._cut = False

        self._loop.call_soon_threadsafe(reopen)

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
