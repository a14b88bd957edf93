"""12349 hotline backend: app assembly, configuration, storage, HTTP/WebSocket API."""

__version__ = "0.1.0"
