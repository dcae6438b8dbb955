"""Orders, rides and deliveries alike: the state machine (pure), the store, their schemas."""
