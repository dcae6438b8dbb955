"""Background jobs on Redis Streams: submit, run with retries and backoff, dead letters."""
