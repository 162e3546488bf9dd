"""The HTTP API (aiohttp): thin handlers over the domain services."""
