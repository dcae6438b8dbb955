"""Real processes: multi-process races, kill -9, Redis outages, rideflow up."""
