"""roomsvc: a self-hosted room server for people and AI agents, with a credential vault."""

__version__ = "0.1.0"
__all__ = ["__version__"]
