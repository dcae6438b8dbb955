"""Real time: the WebSocket gateway (`/v1/ws`) and the hub that feeds it."""
