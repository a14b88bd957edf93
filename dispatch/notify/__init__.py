"""Notifications: the outbox, its worker and the channel adapters."""
