"""Real Redis, RideFlow in-process: the API over ASGI, dispatcher and job worker in burst mode."""
