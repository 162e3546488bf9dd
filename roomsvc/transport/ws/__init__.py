"""Websocket plumbing shared by the native and MeshAgent-compatible protocols."""
