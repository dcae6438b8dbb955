"""The dashboard map's pure parts: a driver's map state and the open orders a process saw."""

from __future__ import annotations

from rideflow.realtime.snapshot import OpenOrders, state_of


def test_a_drivers_map_state() -> None:
    assert state_of("online", "", "", pooled=True) == "a"
    assert state_of("online", "blr-1", "", pooled=False) == "b"
    assert state_of("online", "", "blr-1-x", pooled=False) == "b"
    assert state_of("online", "", "", pooled=False) == "u"  # stale: out of the pool
    assert state_of("offline", "", "", pooled=False) == "u"


def test_open_orders_follow_their_events_until_final() -> None:
    seen = OpenOrders()
    seen.saw("blr", {"order": "blr-1", "status": "QUEUED", "pickup": "12.97,77.59"})
    seen.saw("blr", {"order": "blr-2", "status": "QUEUED", "pickup": "12.98,77.6"})
    seen.saw("blr", {"order": "blr-3", "status": "SEARCHING"})  # queued before we listened
    seen.saw("blr", {"order": "blr-1", "status": "OFFERED", "driver": "D4"})
    assert seen.of("blr") == [
        ["blr-1", 12.97, 77.59, "OFFERED"],
        ["blr-2", 12.98, 77.6, "QUEUED"],
    ]
    seen.saw("blr", {"order": "blr-1", "status": "COMPLETED"})
    seen.saw("blr", {"order": "blr-2", "status": "NO_DRIVER_FOUND"})
    assert seen.of("blr") == [] and seen.of("xyz") == []
