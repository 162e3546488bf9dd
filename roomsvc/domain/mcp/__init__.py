"""MCP servers as room toolkits: discovery of their authorization server and client
registration (pure rules; the fetches live in :mod:`roomsvc.integrations.mcp_discovery`)."""
