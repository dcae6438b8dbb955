"""The city simulator (`rideflow simulate`): drivers and customers as real accounts driving a
running RideFlow through its public API only (HTTP and the WebSocket gateway).

demand.py (the seeded demand schedule, pure), geo.py (distances and moves, pure), client.py
(an account's HTTP calls and socket), driver.py and customer.py (the agents), report.py (the
figures, pure), runner.py (set-up, the run, the tail, the report)."""
