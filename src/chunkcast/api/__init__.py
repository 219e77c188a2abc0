"""HTTP and WebSocket interface (FastAPI)."""
