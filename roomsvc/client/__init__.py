"""Clients of a roomsvc server, kept apart from the server's transports.

* :mod:`roomsvc.client.http`: :class:`ApiClient`, the HTTP API (the CLI's client commands).
* :mod:`roomsvc.client.room`: :class:`RoomConnection`, one participant on the native
  websocket protocol (``roomsvc room listen``, ``room secret oauth|request``).
* :mod:`roomsvc.client.proxy`: the toolkit sidecar proxy, which resolves headers through
  the HTTP API and forwards a toolkit's requests with them.

They import the error tree (``roomsvc.errors``) and the wire error table
(``roomsvc.transport.errors``, the contract both ends share), never a server transport or
a domain service; ``tests/test_layers.py`` checks it.
"""
