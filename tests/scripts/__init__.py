"""One contract test per Lua script, run directly against the test Redis."""
