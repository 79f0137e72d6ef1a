"""Which listener state store a URL names.

This module owns :func:`open_store`: ``redis://HOST:PORT/DB`` (also ``rediss://`` and
``unix://``) opens the Redis backend, ``sqlite:///PATH`` or a plain path the embedded
SQLite one. It sits apart from ``online.state_store`` (the interface both backends
implement) so that the backends never import the module that picks them.
"""

from online import state_store


def open_store(url: str, **kwargs) -> state_store.StateStore:
  """The store ``url`` names: ``redis://HOST:PORT/DB``, ``sqlite:///PATH`` or a path.

  Raises:
    ValueError: an unknown scheme.
  """
  # The backends import their client libraries only when a URL asks for them.
  # pylint: disable=import-outside-toplevel
  if url.startswith(("redis://", "rediss://", "unix://")):
    from online import redis_store
    return redis_store.RedisStore(url, **kwargs)
  if url.startswith("sqlite:///"):
    url = url[len("sqlite://"):]
  elif "://" in url:
    raise ValueError(f"store URL {url!r}: use a path, sqlite:///PATH or redis://HOST:PORT/DB")
  from online import sqlite_store
  return sqlite_store.SqliteStore(url, **kwargs)
