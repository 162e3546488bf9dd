"""Adapters to services outside roomsvc (OAuth providers). Foreign exceptions stop here."""
