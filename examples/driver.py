"""A driver's app: log in (registering the first time), report a position, go online, and over
the WebSocket: take the first offer pushed, drive to the pickup, ask for the customer's trip PIN,
and drive the ride to its end.

    python examples/driver.py --email rohit@example.com --password 'correct horse battery'

It prints what happens; when the customer is picked up it reads the trip PIN from its input (the
customer's app shows it: `examples/customer.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from _client import Api, send


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--name", default="Rohit Sharma")
    p.add_argument("--vehicle", default="Bike · KA01HX2847")
    p.add_argument("--lat", type=float, default=12.9712)
    p.add_argument("--lng", type=float, default=77.5938)
    args = p.parse_args()

    api = Api(args.url)
    me = api.log_in(
        args.email,
        args.password,
        {"role": "DRIVER", "name": args.name, "vehicle": args.vehicle},
    )
    driver = me["id"]  # a driver account is its driver profile
    api.call("PUT", f"/v1/drivers/{driver}/location", {"lat": args.lat, "lng": args.lng})
    api.call("PUT", f"/v1/drivers/{driver}/status", {"status": "online"})
    print(f"driver {driver} online at {args.lat}, {args.lng}; waiting for an offer", flush=True)

    async with api.socket() as ws:
        order = ""
        async for text in ws:
            message = json.loads(text)
            kind, data = message["type"], message["data"]
            if kind == "ping":
                await send(ws, "pong", {})
            elif kind == "offer" and not order:
                order = data["order_id"]
                print(f"offer {data['offer_id']}: {data['kind']} {order}, "
                      f"{data['pickup_distance_m']:.0f} m away; accepting", flush=True)  # fmt: skip
                await send(
                    ws, "offer.accept", {"offer_id": data["offer_id"], "token": data["token"]}, "a1"
                )
            elif kind == "ack" and message["id"] == "a1":
                print(f"accepted: the order is {data['order_status']}", flush=True)
                api.call("POST", f"/v1/rides/{order}/arriving")
                print("arriving at the pickup; the customer's trip PIN?", flush=True)
                pin = (await asyncio.to_thread(sys.stdin.readline)).strip()
                api.call("POST", f"/v1/rides/{order}/picked-up", {"pin": pin})
                print("picked up; driving", flush=True)
                await send(ws, "position", {"lat": args.lat + 0.01, "lng": args.lng + 0.005})
                done = api.call("POST", f"/v1/rides/{order}/complete")
                print(f"ride {order} {done['status']}", flush=True)
                return
            elif kind == "error":
                raise SystemExit(f"{data.get('status')} {data.get('detail')}")


if __name__ == "__main__":
    asyncio.run(main())
