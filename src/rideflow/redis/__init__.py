"""Redis plumbing: connections, the key space, Lua scripts, the pipelined client, streams, clock."""
