"""Transports: HTTP, the native websocket protocol and the MeshAgent-compatible one.

They parse requests, call domain services and shape replies; the rules live in the domain.
"""
