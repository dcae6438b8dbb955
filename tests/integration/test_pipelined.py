"""The multiplexed connection: replies reach the right callers, and outages heal."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rideflow.redis.pipelined import PipelinedRedis
from rideflow.redis.scripts import Scripts
from tests.servers import RedisServer, eventually

pytestmark = pytest.mark.single_redis("PipelinedRedis serves single-Redis URLs only")


async def test_concurrent_calls_get_their_own_replies(flushed: RedisServer) -> None:
    mux = PipelinedRedis(flushed.url, "test")
    try:
        replies = await asyncio.gather(
            *(mux.execute_command("INCRBY", f"k{i % 7}", i) for i in range(2000))
        )
        # Each reply is the running total of its own key: recompute it in send order.
        totals: dict[str, int] = {}
        expected = []
        for i in range(2000):
            totals[f"k{i % 7}"] = totals.get(f"k{i % 7}", 0) + i
            expected.append(totals[f"k{i % 7}"])
        assert replies == expected
        with pytest.raises(ResponseError, match="not an integer"):
            await mux.execute_command("INCRBY", "k1", "x")
        assert await mux.execute_command("GET", "k1") == str(totals["k1"])
    finally:
        await mux.aclose()


async def test_outage_fails_fast_then_heals_and_reloads_scripts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    mux = PipelinedRedis(server.url, "test")
    try:
        scripts = Scripts.register(mux)
        reply = await scripts.rate_fixed_window(keys=["rl"], args=[5, 60_000])
        assert reply[0] == 1
        server.stop()
        with pytest.raises(RedisConnectionError):
            await mux.execute_command("PING")
        with pytest.raises(RedisConnectionError):  # right after a failed connect: fast
            await mux.execute_command("PING")
        server.start()  # empty, script cache lost: EVALSHA fails, EVAL restores it

        async def answers() -> bool:
            try:
                return bool(await mux.execute_command("PING") == "PONG")
            except RedisConnectionError:
                return False

        await eventually(answers, 5, "the reconnect")
        reply = await scripts.rate_fixed_window(keys=["rl"], args=[5, 60_000])
        assert reply[:2] == [1, 4]
    finally:
        await mux.aclose()
        server.stop()


async def test_a_frozen_redis_times_out_and_later_replies_stay_in_order(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    mux = PipelinedRedis(server.url, "test", reply_timeout=0.3)
    try:
        await mux.execute_command("SET", "a", "1")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await mux.execute_command("GET", "a")
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # The late reply to the abandoned GET must not be handed to the next caller.
        assert await mux.execute_command("SET", "b", "2") == "OK"
        assert await mux.execute_command("GET", "b") == "2"
    finally:
        await mux.aclose()
        server.stop()


async def test_password_and_database_are_set_before_any_command(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    try:
        import redis as sync_redis

        admin = sync_redis.Redis(port=server.port)
        admin.config_set("requirepass", "s3cret")
        admin.close()
        mux = PipelinedRedis(f"redis://:s3cret@127.0.0.1:{server.port}/3", "test")
        try:
            await asyncio.gather(*(mux.execute_command("SET", f"k{i}", i) for i in range(50)))
            assert await mux.execute_command("CLIENT", "GETNAME") == "rideflow-test"
        finally:
            await mux.aclose()
        check = sync_redis.Redis(port=server.port, password="s3cret", db=3)
        assert check.dbsize() == 50
        check.close()
        wrong = PipelinedRedis(f"redis://:nope@127.0.0.1:{server.port}/0", "test")
        with pytest.raises(RedisConnectionError, match="handshake"):
            await wrong.execute_command("PING")
        await wrong.aclose()
    finally:
        server.stop()
