"""One Redis connection shared by many coroutines, for the calls made on every request.

Commands are written the moment they are issued and replies are matched to callers in order
(what other clients call auto-pipelining). A call then costs a write and a wake-up instead of a
pool checkout, and concurrent requests share round trips: this keeps the per-request rate-limit
check near the cost of Redis itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

RECONNECT_PAUSE_S = 0.5


class PipelinedRedis:
    """A minimal client with `execute_command`, enough for the Lua scripts; it reconnects on
    the next call after the connection is lost, failing the calls that were in flight."""

    def __init__(
        self, url: str, name: str, connect_timeout: float = 2.0, reply_timeout: float = 5.0
    ) -> None:
        self.options = parse_url(url)
        self.name, self.connect_timeout, self.reply_timeout = name, connect_timeout, reply_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._connecting = asyncio.Lock()
        self._parser = hiredis.Reader(encoding="utf-8")
        self._retry_at = 0.0
        self._last_error = ""

    @staticmethod
    def supports(url: str) -> bool:
        """Plain TCP URLs only; TLS and unix sockets stay with the pooled client."""
        return url.startswith("redis://")

    async def execute_command(self, *args: Any) -> Any:
        """Send one command and wait for its reply."""
        writer = self._writer or await self._connect()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        writer.write(hiredis.pack_command(args))
        try:
            async with asyncio.timeout(self.reply_timeout):
                return await future
        except TimeoutError as exc:
            # The late reply still finds this (cancelled) future first, so order is kept.
            raise RedisTimeoutError(f"no reply from Redis in {self.reply_timeout} s") from exc

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            if time.monotonic() < self._retry_at:
                # A connect just failed: fail the queued callers fast instead of one by one.
                raise RedisConnectionError(self._last_error)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await self._open()
            except (OSError, TimeoutError, RedisError) as exc:
                self._last_error = f"cannot connect to Redis: {exc}"
                self._retry_at = time.monotonic() + RECONNECT_PAUSE_S
                raise RedisConnectionError(self._last_error) from exc
            self._writer = writer
            self._reading = asyncio.create_task(self._read(reader, writer, self._parser))
            return writer

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect and finish the handshake before anyone else may write on the connection."""
        host, port = self.options.get("host", "127.0.0.1"), self.options.get("port", 6379)
        reader, writer = await asyncio.open_connection(host, port)
        commands: list[tuple[Any, ...]] = []
        if self.options.get("password"):
            user = self.options.get("username")
            password = self.options["password"]
            commands.append(("AUTH", user, password) if user else ("AUTH", password))
        if self.options.get("db"):
            commands.append(("SELECT", self.options["db"]))
        commands.append(("CLIENT", "SETNAME", f"rideflow-{self.name}"))
        writer.write(b"".join(hiredis.pack_command(c) for c in commands))
        self._parser = hiredis.Reader(encoding="utf-8")
        replies = 0
        while replies < len(commands):
            data = await reader.read(65536)
            if not data:
                writer.close()
                raise RedisConnectionError("Redis closed the connection during the handshake")
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    writer.close()
                    raise ResponseError(f"Redis refused the handshake: {reply}")
                replies += 1
        return reader, writer

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: hiredis.Reader
    ) -> None:
        error: Exception = RedisConnectionError("connection to Redis closed")
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = self._pending.popleft()
                    if future.done():
                        continue  # its caller gave up (timeout or cancellation)
                    if isinstance(reply, hiredis.ReplyError):
                        text = str(reply)
                        cls = NoScriptError if text.startswith("NOSCRIPT") else ResponseError
                        future.set_exception(cls(text))
                    else:
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError) as exc:
            error = RedisConnectionError(f"connection to Redis lost: {exc}")
        finally:
            self._drop(writer, error)

    def _drop(self, writer: asyncio.StreamWriter, error: Exception) -> None:
        """Forget a dead connection and fail every call still waiting on it."""
        if self._writer is writer:
            self._writer = None
            while self._pending:
                future = self._pending.popleft()
                if not future.done():
                    future.set_exception(error)
        writer.close()

    async def aclose(self) -> None:
        """Close the connection; calls in flight fail."""
        if self._writer is not None:
            self._drop(self._writer, RedisConnectionError("client closed"))
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
