"""The MeshAgent-compatible protocol: one more adapter over the domain services.

The real MeshAgent SDKs (Python ``meshagent-api`` 0.44, TypeScript, Dart) connect to
``/rooms/{room}`` and use room secrets and messaging; docs/meshagent.md says what is
supported and how MeshAgent and native participants see each other. Modules:

* :mod:`.framing`   - packets <-> messages (start packet + 1024-byte data packets); no I/O
* :mod:`.packing`   - packed payloads (JSON header + binary trailer) and contents; no I/O
* :mod:`.session`   - one connection's sink for room events, its pushes and presence
* :mod:`.notices`   - domain notices (secret and consent requests, ...) as MeshAgent pushes; no I/O
* :mod:`.tools`     - the ``(toolkit, tool)`` table and field helpers
* :mod:`.secrets_tools`, :mod:`.messaging_tools` - the toolkits, over SecretService / RoomService
* :mod:`.oauth_tools` - toolkit ``secrets``' requests between participants, over
  SecretRequestService / OAuthService
* :mod:`.handler`   - the aiohttp websocket handler: upgrade, handshake, read loop
* :mod:`.accounts`  - ``POST /accounts/projects/{project}/rooms/{room}/connect`` (the CLI's token call)
"""
