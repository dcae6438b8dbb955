"""A customer's app: log in (registering the first time), request a ride, and watch it live over
the WebSocket: every transition, the driver's position, and the trip PIN to give the driver at
the pickup.

    python examples/customer.py --email asha@example.com --password 'correct horse battery'

Reconnecting resumes: it follows the ride again from the last event it saw, so no transition is
lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import websockets
from _client import Api, send

FINAL = {"COMPLETED", "CANCELLED", "NO_DRIVER_FOUND"}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--name", default="Asha Rao")
    p.add_argument("--pickup", default="12.9716,77.5946", help="lat,lng")
    p.add_argument("--dropoff", default="13.0100,77.6000", help="lat,lng")
    args = p.parse_args()

    api = Api(args.url)
    api.log_in(args.email, args.password, {"role": "CUSTOMER", "name": args.name})
    (plat, plng), (dlat, dlng) = (map(float, x.split(",")) for x in (args.pickup, args.dropoff))
    ride = api.call(
        "POST",
        "/v1/rides",
        {"pickup": {"lat": plat, "lng": plng}, "dropoff": {"lat": dlat, "lng": dlng}},
    )["ride_id"]
    print(f"ride {ride} requested", flush=True)

    last = None  # the last event seen: a reconnect resumes after it
    while True:
        try:
            async with api.socket() as ws:
                subscription = {"order_id": ride} | ({"after": last} if last else {})
                await send(ws, "subscribe", subscription, "s1")
                async for text in ws:
                    message = json.loads(text)
                    kind, data = message["type"], message["data"]
                    if kind == "ping":
                        await send(ws, "pong", {})
                    elif kind == "event":
                        last = message["id"]
                        driver = f" (driver {data['driver_id']})" if data.get("driver_id") else ""
                        print(f"{data['status']}{driver}", flush=True)
                        if data["status"] in FINAL:
                            return
                    elif kind == "pin":
                        print(f"PIN: {data['pin']}  (tell your driver at the pickup)", flush=True)
                    elif kind == "position":
                        print(f"driver at {data['lat']:.5f}, {data['lng']:.5f}", flush=True)
                    elif kind == "error":
                        raise SystemExit(f"{data.get('status')} {data.get('detail')}")
        except (OSError, websockets.ConnectionClosedError) as exc:
            print(f"disconnected ({exc}); resuming after {last}", flush=True)
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(main())
