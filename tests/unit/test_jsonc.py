"""JSON with comments: comments go, strings (with their escapes) stay."""

from __future__ import annotations

import json

import pytest

from rideflow.api.jsonc import strip_comments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('{"a": 1} // the end', '{"a": 1} '),
        ('{"a": 1, // one\n"b": 2}', '{"a": 1, \n"b": 2}'),  # the newline stays
        ('{"a": /* one */ 1}', '{"a":   1}'),  # a block comment is one blank
        ("1/**/2", "1 2"),  # ... so it never joins two tokens
        ('{"url": "http://x//y"}', '{"url": "http://x//y"}'),
        ('{"c": "/* not a comment */"}', '{"c": "/* not a comment */"}'),
        (r'{"q": "say \"//hi\""} // c', r'{"q": "say \"//hi\""} '),
        (r'{"bs": "\\"} // c', r'{"bs": "\\"} '),  # an escaped backslash ends the string
        ('{"a": 1} /* never closed', '{"a": 1}  '),  # blanked to the end
        ('{"a": "never closed', '{"a": "never closed'),
        ("// only a comment", ""),
        ('{"a": "é // ü"}', '{"a": "é // ü"}'),
    ],
)
def test_strip_comments(text: str, expected: str) -> None:
    assert strip_comments(text) == expected


def test_the_delivery_contract_body_parses() -> None:
    body = (
        '{ "order_id": "ORD_2847", "location": { "lat": 12.9716, "lng": 77.5946 },\n'
        '  "strategy": "nearest", // or "rating"\n'
        '  /* seconds */ "timeout_sec": 30 }'
    )
    assert json.loads(strip_comments(body)) == {
        "order_id": "ORD_2847",
        "location": {"lat": 12.9716, "lng": 77.5946},
        "strategy": "nearest",
        "timeout_sec": 30,
    }
