"""HTTP and WebSocket API (aiohttp)."""
