"""Dispatch: incidents, routing, escalation and notifications."""
