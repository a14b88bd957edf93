"""MQTT device gateway: the device contract (pure) and the broker adapter (I/O)."""
