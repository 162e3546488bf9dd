"""Fan-out between roomsvc nodes over Redis pub/sub (issue 15; docs/scale.md).

One channel per cluster, ``<prefix>:events``, carries every node's room events and token
revocations. Each node publishes through one connection, from one queue, in order, so
what one participant sends reaches every other node in the order it was sent. Presence
is also kept in Redis, so a node that starts (or comes back) learns who is there:

* ``<prefix>:nodes``                       the set of node ids
* ``<prefix>:node:<id>:alive``             set every heartbeat, expires after ``node_expiry``
* ``<prefix>:node:<id>:participants``      hash: participant id -> {room, participant}

Every heartbeat a node also looks at the other nodes: one whose ``alive`` key has expired
is gone, and its participants leave (``NodeGone``) within node_expiry + heartbeat_interval.
A node that loses Redis admits nobody (``unavailable``, /readyz 503) until it is back;
then it announces all its participants again (a leave then a join for the others).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any, Callable, Coroutine

import redis.asyncio as redis
from redis.exceptions import RedisError

from roomsvc import strict_json
from roomsvc.domain.cluster import (
    BusEvent,
    CallAnswered,
    NodeGone,
    NodePresent,
    RemoteCall,
    RemoteConsentRequest,
    RemoteJoined,
    RemoteLeft,
    RemoteMessage,
    RemoteRequestEnded,
    RemoteSecretRequest,
    RemoteUpdated,
    RequestCompleted,
    SecretAnswered,
)
from roomsvc.domain.events import CallReceived, MessageReceived, OAuthConsentRequested, ParticipantInfo, SecretRequested
from roomsvc.domain.observe import NO_CLUSTER, ClusterObserver
from roomsvc.domain.ports import Cipher, EncryptedBlob
from roomsvc.domain.rooms import RoomService
from roomsvc.errors import DependencyMissing, InvalidRequest, RoomsvcError
from roomsvc.ids import Identity, ParticipantId, RoomName

log = logging.getLogger("roomsvc.cluster")

UNAVAILABLE = "redis unavailable"
#: events published in one round trip at most
BATCH = 512


class RedisBus:
    """A :class:`roomsvc.domain.cluster.RoomBus` over Redis pub/sub."""

    def __init__(
        self,
        *,
        url: str,
        password: str | None,
        node_id: str,
        prefix: str,
        heartbeat_interval: float,
        node_expiry: float,
        timeout: float,
        cipher: Cipher,
        observer: ClusterObserver = NO_CLUSTER,
    ) -> None:
        #: counts events in and out, failures, the link and the delivery lag (docs/operations.md)
        self._observer = observer
        #: seals what must not cross in the clear (an OAuth start link is a one-time capability)
        self._cipher = cipher
        self._node = node_id
        self._prefix = prefix
        self._channel = f"{prefix}:events"
        self._nodes_key = f"{prefix}:nodes"
        self._interval = heartbeat_interval
        self._expiry_ms = int(node_expiry * 1000)
        self._url = url
        self._client = redis.Redis.from_url(
            url, password=password, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True,
        )
        #: (raw or event, what to send, when it was made: the wall-clock stamp the receivers read)
        self._queue: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self._rooms: RoomService | None = None
        self._on_revoked: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._subscribed = False
        self._beating = False
        #: True when this node may have been dropped by the others: announce everyone again
        self._resync = False

    # -- the RoomBus port ------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node

    def unavailable(self) -> str | None:
        return None if self._subscribed and self._beating else UNAVAILABLE

    def publish(self, event: BusEvent) -> None:
        if self.unavailable() is not None:
            self._observer.publish_failed("unavailable", 1)
            return  # the others will drop this node, and it announces everyone again on return
        self._queue.put_nowait(("event", event, time.time()))

    def publish_revoked(self) -> None:
        """Tell the other nodes that a token or identity was revoked (they re-read the list)."""
        if self.unavailable() is None:
            self._queue.put_nowait(("raw", {"k": "revoked", "n": self._node}, time.time()))
        else:
            self._observer.publish_failed("unavailable", 1)

    # -- life ----------------------------------------------------------------------------

    async def start(self, rooms: RoomService, on_revoked: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Connect, announce this node, learn who is on the others, then follow them.

        Raises:
            DependencyMissing: Redis does not answer at start.
        """
        self._rooms, self._on_revoked = rooms, on_revoked
        try:
            await self._client.ping()
        except (RedisError, OSError):
            raise DependencyMissing(
                f"Redis at {_safe_url(self._url)} does not answer (cluster.redis_url); "
                "start Redis or set cluster.enabled = false"
            ) from None
        # a node restarted under the same node_id (within node_expiry of a crash) starts clean:
        # the others drop whoever its previous run had announced
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(self._participants_key(self._node))
        self._send(pipe, {"k": "gone", "n": self._node})
        await pipe.execute()
        await self._beat()
        ready = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._follow(ready), name="cluster follow"),
            asyncio.create_task(self._write(), name="cluster write"),
            asyncio.create_task(self._heartbeats(), name="cluster heartbeat"),
        ]
        await asyncio.wait_for(ready, timeout=10)
        log.info("cluster: node %s joined the others over %s (prefix %r)", self._node, _safe_url(self._url), self._prefix)

    async def close(self) -> None:
        """Leave the cluster: the others drop this node's participants at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self._alive_key(self._node), self._participants_key(self._node))
            pipe.srem(self._nodes_key, self._node)
            self._send(pipe, {"k": "gone", "n": self._node})
            await pipe.execute()
        except (RedisError, OSError):
            pass
        self._observer.connected(False)
        await self._client.aclose()

    # -- tasks ---------------------------------------------------------------------------

    async def _write(self) -> None:
        """Publish queued events in order, many per round trip."""
        while True:
            items = [await self._queue.get()]
            while len(items) < BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            pipe = self._client.pipeline(transaction=False)
            sent: list[str] = []
            for kind, item, stamp in items:
                if kind == "raw":
                    sent.append(self._send(pipe, item, stamp))
                    continue
                try:
                    doc = self._seal_consent(item) if isinstance(item, RemoteConsentRequest) else _encode(item)
                    data = _dumps({**doc, "ts": stamp})
                except (TypeError, ValueError):
                    log.warning("cluster: an event that is not JSON was not sent to the other nodes")
                    self._observer.publish_failed("encoding", 1)
                    continue
                self._presence(pipe, item)
                pipe.publish(self._channel, data)
                sent.append(str(doc["k"]))
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self._observer.publish_failed("redis", len(sent))
                self._lost("publish", exc)
            else:
                for sent_kind in sent:
                    self._observer.published(sent_kind)

    def _send(self, pipe: Any, doc: dict[str, Any], stamp: float | None = None) -> str:
        """Queue ``doc`` on the pipeline, stamped with the wall-clock time it was made."""
        pipe.publish(self._channel, _dumps({**doc, "ts": time.time() if stamp is None else stamp}))
        return str(doc["k"])

    def _presence(self, pipe: Any, event: BusEvent) -> None:
        key = self._participants_key(self._node)
        if isinstance(event, (RemoteJoined, RemoteUpdated)):
            pipe.hset(key, event.participant.id, _dumps({"room": event.room, "p": _info(event.participant)}))
        elif isinstance(event, RemoteLeft):
            pipe.hdel(key, event.participant_id)

    async def _follow(self, ready: asyncio.Future[None]) -> None:
        """Receive the other nodes' events; reconnect (and re-learn presence) when cut off."""
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                await self._learn()
                self._subscribed = True
                self._observer.connected(self.unavailable() is None)
                if not ready.done():
                    ready.set_result(None)
                while True:
                    message = await pubsub.get_message(timeout=self._interval)
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._subscribed = False
                self._resync = True
                self._observer.connected(False)
                self._lost("subscription", exc)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(self._interval)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._beat()
                await self._sweep()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._beating = False
                self._resync = True
                self._observer.connected(False)
                self._lost("heartbeat", exc)

    async def _beat(self) -> None:
        previous = await self._client.set(self._alive_key(self._node), b"1", px=self._expiry_ms, get=True)
        await self._client.sadd(self._nodes_key, self._node)
        was_beating, self._beating = self._beating, True
        self._observer.connected(self.unavailable() is None)
        if (previous is None and was_beating) or (self._resync and self._subscribed):
            # the others may have dropped this node (its key expired, or events were lost):
            # announce everyone again, from a clean slate
            self._resync = False
            await self._announce_all()

    async def _announce_all(self) -> None:
        assert self._rooms is not None
        key = self._participants_key(self._node)
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(key)
        sent = [self._send(pipe, {"k": "gone", "n": self._node})]
        for room, info in self._rooms.local_rooms():
            event = RemoteJoined(self._node, room, info)
            self._presence(pipe, event)
            sent.append(self._send(pipe, _encode(event)))
        await pipe.execute()
        for kind in sent:
            self._observer.published(kind)
        log.info("cluster: announced this node's participants again")

    async def _sweep(self) -> None:
        """Drop the participants of every node whose heartbeat expired."""
        assert self._rooms is not None
        members = {str(m) for m in await self._client.smembers(self._nodes_key)}
        alive = 1  # this node: it has just beaten
        for node in (members | self._rooms.remote_nodes()) - {self._node}:
            if await self._client.exists(self._alive_key(node)):
                alive += 1
                continue
            log.warning("cluster: node %s stopped beating; its participants leave", node)
            self._rooms.receive(NodeGone(node))
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self._participants_key(node))
            pipe.srem(self._nodes_key, node)
            await pipe.execute()
        self._observer.nodes_alive(alive)

    async def _learn(self) -> None:
        """Who is on the other live nodes (after subscribing, so nothing is missed between).

        After an outage of this node's link the list may hold participants who left while
        their leave was not carried: each live node's entries are reconciled against its
        presence hash, and nodes no longer alive are dropped at once."""
        assert self._rooms is not None
        alive: set[str] = set()
        for raw in await self._client.smembers(self._nodes_key):
            node = str(raw)
            if node == self._node or not await self._client.exists(self._alive_key(node)):
                continue
            alive.add(node)
            held: set[str] = set()
            for value in (await self._client.hgetall(self._participants_key(node))).values():
                entry = strict_json.loads(value, what="cluster presence entry")
                info = _parse_info(entry["p"])
                held.add(info.id)
                self._rooms.receive(RemoteJoined(node, RoomName(entry["room"]), info))
            self._rooms.receive(NodePresent(node, frozenset(held)))
        for node in self._rooms.remote_nodes() - alive:
            self._rooms.receive(NodeGone(node))

    # -- receiving -------------------------------------------------------------------------

    def _on_message(self, data: str) -> None:
        assert self._rooms is not None
        try:
            doc = strict_json.loads(data, what="cluster event")
            if doc.get("n") == self._node:
                return
            kind = doc.get("k")
            stamp = doc.get("ts")
            lag = time.time() - stamp if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
            self._observer.received(str(kind), lag)
            if kind == "revoked":
                if self._on_revoked is not None:
                    task = asyncio.get_running_loop().create_task(self._on_revoked())
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                return
            if kind == "gone":
                self._rooms.receive(NodeGone(doc["n"]))
                return
            if kind == "consent_request":
                self._rooms.receive(self._open_consent(doc))
                return
            self._rooms.receive(_decode(doc))
        except (InvalidRequest, ValueError, KeyError, TypeError, AttributeError):
            # anything on the channel is input: not JSON, duplicate keys, too deep, not an
            # object, a field missing or of the wrong type
            log.warning("cluster: an event that does not parse was dropped")
        except RoomsvcError as exc:  # a sealed notice under a key this node has not loaded yet
            log.warning("cluster: a sealed event could not be opened (%s) and was dropped", exc.name)

    def _seal_consent(self, event: RemoteConsentRequest) -> dict[str, Any]:
        q = event.notice
        inner = _dumps({
            "connector": q.connector, "oauth": dict(q.oauth), "to": q.participant_id, "timeout": q.timeout,
            "delegate_to": q.delegate_to, "redirect_uri": q.redirect_uri, "requester": _info(q.requester),
            "expires_at": q.expires_at, "owner": q.owner, "usable_by": list(q.usable_by), "start_url": q.start_url,
            "challenge": q.challenge,
        })
        blob = self._cipher.encrypt(inner, _consent_aad(q.request_id))
        return {"k": "consent_request", "n": event.node, "r": event.room, "req": q.request_id,
                "sealed": [blob.kek_id, _b64(blob.wrapped_dek), _b64(blob.ciphertext)]}

    def _open_consent(self, doc: dict[str, Any]) -> RemoteConsentRequest:
        s = doc["sealed"]
        blob = EncryptedBlob(str(s[0]), base64.b64decode(s[1]), base64.b64decode(s[2]))
        request_id = str(doc["req"])
        q = strict_json.loads(self._cipher.decrypt(blob, _consent_aad(request_id)), what="sealed consent request")
        return RemoteConsentRequest(str(doc["n"]), RoomName(doc["r"]), OAuthConsentRequested(
            request_id=request_id, connector=q["connector"], oauth=q["oauth"], participant_id=ParticipantId(q["to"]),
            timeout=float(q["timeout"]), delegate_to=Identity(q["delegate_to"]) if q.get("delegate_to") else None,
            redirect_uri=str(q["redirect_uri"]), requester=_parse_info(q["requester"]), expires_at=float(q["expires_at"]),
            owner=Identity(q["owner"]), usable_by=tuple(q["usable_by"]), start_url=q.get("start_url"),
            challenge=q.get("challenge"),
        ))

    def _lost(self, what: str, exc: BaseException) -> None:
        log.warning("cluster: Redis %s failed (%s); this node admits nobody until it is back", what, type(exc).__name__)

    def _alive_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}:alive"

    def _participants_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}:participants"


# -- the wire format: JSON, attachments in base64 -------------------------------------------


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _info(p: ParticipantInfo) -> dict[str, Any]:
    return {"id": p.id, "identity": p.identity, "role": p.role, "attributes": dict(p.attributes), "protocol": p.protocol}


def _parse_info(d: dict[str, Any]) -> ParticipantInfo:
    return ParticipantInfo(
        id=ParticipantId(d["id"]), identity=Identity(d["identity"]), role=str(d["role"]),
        attributes=dict(d["attributes"]), protocol=str(d["protocol"]),
    )


def _encode(event: BusEvent) -> dict[str, Any]:
    if isinstance(event, RemoteMessage):
        m = event.message
        return {
            "k": "message", "n": event.node, "r": event.room, "to": event.to, "s": _info(m.sender),
            "t": m.message_type, "b": m.body, "bc": m.broadcast,
            "a": base64.b64encode(m.attachment).decode() if m.attachment is not None else None,
        }
    if isinstance(event, RemoteJoined):
        return {"k": "joined", "n": event.node, "r": event.room, "p": _info(event.participant)}
    if isinstance(event, RemoteUpdated):
        return {"k": "updated", "n": event.node, "r": event.room, "p": _info(event.participant)}
    if isinstance(event, RemoteLeft):
        return {"k": "left", "n": event.node, "r": event.room, "id": event.participant_id}
    if isinstance(event, RemoteRequestEnded):
        return {"k": "ended", "n": event.node, "r": event.room, "to": event.participant_id,
                "req": event.request_id, "o": event.outcome}
    if isinstance(event, RequestCompleted):
        return {"k": "completed", "n": event.node, "req": event.request_id}
    if isinstance(event, RemoteCall):
        c = event.call
        return {"k": "call", "n": event.node, "r": event.room, "to": event.to, "id": c.call_id, "s": _info(c.sender),
                "m": c.method, "b": c.body}
    if isinstance(event, CallAnswered):
        return {"k": "call_answer", "n": event.node, "id": event.call_id, "b": event.body, "e": event.error}
    if isinstance(event, RemoteSecretRequest):
        q = event.notice
        return {"k": "secret_request", "n": event.node, "r": event.room, "q": {
            "id": q.request_id, "url": q.url, "type": q.type, "to": q.participant_id, "timeout": q.timeout,
            "delegate_to": q.delegate_to, "requester": _info(q.requester), "owner": q.owner, "usable_by": list(q.usable_by),
        }}
    if isinstance(event, SecretAnswered):
        sealed = event.sealed
        return {"k": "secret_answer", "n": event.node, "req": event.request_id, "o": event.outcome, "why": event.reason,
                "sealed": None if sealed is None else [sealed.kek_id, _b64(sealed.wrapped_dek), _b64(sealed.ciphertext)]}
    return {"k": "gone", "n": event.node}


def _decode(doc: dict[str, Any]) -> BusEvent:
    kind, node, room = doc["k"], str(doc["n"]), RoomName(doc.get("r", ""))
    if kind == "message":
        attachment = base64.b64decode(doc["a"]) if doc.get("a") is not None else None
        message = MessageReceived(_parse_info(doc["s"]), str(doc["t"]), doc["b"], attachment, broadcast=bool(doc["bc"]))
        to = ParticipantId(doc["to"]) if doc.get("to") is not None else None
        return RemoteMessage(node, room, to, message)
    if kind == "joined":
        return RemoteJoined(node, room, _parse_info(doc["p"]))
    if kind == "updated":
        return RemoteUpdated(node, room, _parse_info(doc["p"]))
    if kind == "left":
        return RemoteLeft(node, room, ParticipantId(doc["id"]))
    if kind == "ended":
        return RemoteRequestEnded(node, room, ParticipantId(doc["to"]), str(doc["req"]), str(doc["o"]))
    if kind == "completed":
        return RequestCompleted(node, str(doc["req"]))
    if kind == "call":
        call = CallReceived(str(doc["id"]), _parse_info(doc["s"]), str(doc["m"]), doc["b"])
        return RemoteCall(node, room, ParticipantId(doc["to"]), call)
    if kind == "call_answer":
        return CallAnswered(node, str(doc["id"]), doc.get("b"), None if doc.get("e") is None else str(doc["e"]))
    if kind == "secret_request":
        q = doc["q"]
        return RemoteSecretRequest(node, room, SecretRequested(
            request_id=str(q["id"]), url=str(q["url"]), type=str(q["type"]), participant_id=ParticipantId(q["to"]),
            timeout=float(q["timeout"]), delegate_to=Identity(q["delegate_to"]) if q.get("delegate_to") else None,
            requester=_parse_info(q["requester"]), owner=Identity(q["owner"]), usable_by=tuple(q["usable_by"]),
        ))
    if kind == "secret_answer":
        s = doc.get("sealed")
        blob = None if s is None else EncryptedBlob(str(s[0]), base64.b64decode(s[1]), base64.b64decode(s[2]))
        return SecretAnswered(node, str(doc["req"]), str(doc["o"]), blob, str(doc.get("why") or ""))
    raise ValueError(f"unknown event kind {kind!r}")


def _consent_aad(request_id: str) -> bytes:
    return f"roomsvc:consent-notice:{request_id}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _safe_url(url: str) -> str:
    """The URL without any user part (a password never reaches a message)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
