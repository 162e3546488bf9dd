"""Storage engines. Each implements :class:`roomsvc.domain.ports.Store`."""
