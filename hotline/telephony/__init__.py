"""Telephony: the 12349 queue over Asterisk AMI (link, call tracker, screen pop, outbound calls)."""
