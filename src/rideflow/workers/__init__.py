"""Long-running processes: the dispatcher workers and the supervisor of `rideflow up`."""
