"""SQLite storage on aiosqlite: the embedded default."""

from roomsvc.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
