"""Redis plumbing without a Redis: stream id order, the command packer."""

from __future__ import annotations

from typing import Any

import pytest
from redis.connection import Encoder, PythonRespSerializer
from redis.exceptions import DataError

from rideflow.redis.connections import PackedConnection, _pack
from rideflow.redis.streams import id_lt


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1-0", "1-1", True),
        ("1-1", "1-0", False),
        ("1-1", "1-1", False),
        ("9-0", "10-0", True),  # numbers, not strings
        ("1-9", "1-10", True),
        ("2-0", "1-99", False),
        ("5", "5-0", False),  # no sequence is sequence 0
        ("5", "5-1", True),
        ("0-0", "1700000000000-0", True),
    ],
)
def test_id_lt_orders_stream_ids(a: str, b: str, expected: bool) -> None:
    assert id_lt(a, b) is expected


def redis_py_pack(*args: Any) -> bytes:
    """The same command through redis-py's own (pure Python) packer."""
    serializer = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    return b"".join(serializer.pack(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("PING",),
        ("SET", "k", "v"),
        ("XINFO GROUPS", "rf:{blr}:requests"),  # one string for two words
        ("CLIENT SETNAME", "rideflow-api"),
        ("EVALSHA", "ab" * 20, 2, "k1", "k2", 1.5, -3, b"\x00\xff", "ü"),
        ("SET", "k", "x" * 10_000),
        ("HSET", "h", "empty", ""),
    ],
)
def test_packing_matches_redis_py(args: tuple[Any, ...]) -> None:
    assert _pack(args) == redis_py_pack(*args)


def test_a_command_name_in_bytes_is_split_too() -> None:
    assert _pack((b"XINFO GROUPS", "s")) == redis_py_pack("XINFO", "GROUPS", "s")


def test_pipelines_are_packed_into_one_buffer() -> None:
    commands = [("SET", "a", 1), ("XINFO STREAM", "s"), ("GET", "a")]
    packed = PackedConnection.pack_commands(None, commands)  # type: ignore[arg-type]
    assert packed == [b"".join(redis_py_pack(*c) for c in commands)]
    assert PackedConnection.pack_command(None, "GET", "a") == [redis_py_pack("GET", "a")]  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, {"a": 1}, [1, 2], object()])
def test_a_value_redis_cannot_take_is_a_data_error(bad: object) -> None:
    with pytest.raises(DataError):
        _pack(("SET", "k", bad))
    with pytest.raises(DataError):
        redis_py_pack("SET", "k", bad)  # as with redis-py's own packer
