"""PostgreSQL storage on asyncpg: the engine for several nodes (``storage.engine = "postgres"``)."""

from roomsvc.storage.postgres.store import Connector, PostgresStore, migrate

__all__ = ["Connector", "PostgresStore", "migrate"]
