"""Real servers for tests: a throwaway redis-server and RideFlow processes, each on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import redis as sync_redis

from rideflow.workers.supervisor import ManagedRedis

START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition, timeout: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns a truthy value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer(ManagedRedis):
    """A throwaway redis-server of the test's own, never the machine's shared one."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(port or free_port(), directory, durable=False)

    def flushall(self) -> None:
        with sync_redis.Redis(port=self.port) as client:
            client.flushall()

    def dbsize(self) -> int:
        with sync_redis.Redis(port=self.port) as client:
            return int(client.dbsize())


class Service:
    """A `rideflow` subcommand running as its own process, output captured to a file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rideflow", *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


class ApiService(Service):
    """`rideflow api` on a free port, started and ready."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str = "api") -> None:
        self.port = free_port()
        super().__init__(name, ["api", "--port", str(self.port)], env, log_dir)
        wait_until(self._healthy, START_TIMEOUT_S, f"{name} on port {self.port}", 0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.alive(), f"{self.name} exited:\n{self.output()}"
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        return False


class DispatcherService(Service):
    """`rideflow dispatcher`, started and reading its streams."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, name: str = "dispatcher", concurrency: int = 8
    ) -> None:
        super().__init__(name, ["dispatcher", "--concurrency", str(concurrency)], env, log_dir)
        wait_until(self._started, START_TIMEOUT_S, f"{name} to start", 0.05)

    def _started(self) -> bool:
        assert self.alive(), f"{self.name} exited:\n{self.output()}"
        return "workers" in self.output()


class JobWorkerService(Service):
    """`rideflow jobs`, started and reading its queues."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        name: str = "jobs",
        concurrency: int = 16,
        burst: bool = False,
    ) -> None:
        args = ["jobs", "--concurrency", str(concurrency)] + (["--burst"] if burst else [])
        super().__init__(name, args, env, log_dir)
        wait_until(self._started, START_TIMEOUT_S, f"{name} to start", 0.05)

    def _started(self) -> bool:
        if not self.alive():
            return True  # a burst worker may be done already; callers check its exit
        return "job worker" in self.output()


class RecorderService(Service):
    """`rideflow recorder`, started and reading its streams."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, name: str = "recorder", wait: bool = True
    ) -> None:
        super().__init__(name, ["recorder"], env, log_dir)
        if wait:
            wait_until(self._started, START_TIMEOUT_S, f"{name} to start", 0.05)

    def _started(self) -> bool:
        assert self.alive(), f"{self.name} exited:\n{self.output()}"
        return "streams into" in self.output()


async def raw_get(port: int, path: str, headers: Mapping[str, str] | None = None) -> int:
    """One GET on its own connection (`Connection: close`); returns the status code.

    Thousands of these can be in flight at once, which httpx's pool does not manage quickly.
    """
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def eventually(condition, within: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Await `condition()` until it returns a truthy value; fail the test after `within` s."""
    import asyncio

    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


async def post_many(
    port: int,
    path: str,
    bodies: list[Mapping[str, object]],
    keys: list[str] | None = None,
    connections: int = 8,
    headers: Mapping[str, str] | None = None,
) -> list[tuple[int, bytes]]:
    """POST each body as JSON to `path`; see `send_many`."""
    return await send_many(port, [("POST", path, b) for b in bodies], keys, connections, headers)


async def send_many(
    port: int,
    requests: list[tuple[str, str, Mapping[str, object]]],
    keys: list[str] | None = None,
    connections: int = 8,
    headers: Mapping[str, str] | None = None,
) -> list[tuple[int, bytes]]:
    """Send each (method, path, JSON body) over `connections` keep-alive HTTP/1.1
    connections; (status, body) per request, in order. `keys[i]`, when given, is request i's
    `Idempotency-Key`, so a request whose connection dropped under load is sent again without
    creating twice. `headers` go with every request: the tests' ADMIN credentials unless given.

    Several times faster than httpx here (its pure-Python HTTP and pool cost more than the
    server): bulk submissions in the e2e tests took minutes through it."""
    import asyncio

    import orjson

    from tests.auth import any_admin

    extra = [f"{k}: {v}" for k, v in (any_admin() if headers is None else headers).items()]
    results: list[tuple[int, bytes] | None] = [None] * len(requests)
    todo = iter(range(len(requests)))

    def request(i: int) -> bytes:
        method, path, body = requests[i]
        payload = orjson.dumps(body)
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}", *extra]
        if keys is not None:
            head.append(f"Idempotency-Key: {keys[i]}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int
    ) -> tuple[int, bytes]:
        writer.write(request(i))
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
        )
        return int(lines[0].split()[1]), await reader.readexactly(length)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in todo:
                for attempt in range(3):
                    try:
                        results[i] = await exchange(reader, writer, i)
                        break
                    except (OSError, asyncio.IncompleteReadError):
                        if attempt == 2 or keys is None:
                            raise
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return [r for r in results if r is not None]
