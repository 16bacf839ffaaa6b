"""What one node tells another through PostgreSQL NOTIFY: the channels and the payload format.

Each node LISTENs on its own channel, ``ember_node_<node_id>`` (an SQL identifier: lowercase letters,
digits and "_", well under the 63-byte limit, since ``server.node_id`` is 0..1023). A payload is one JSON
object of at most ``MAX_PAYLOAD_BYTES`` UTF-8 bytes (PostgreSQL refuses 8000 and more). It carries ids and
hints, never a message body, a token or a secret: the node that gets it reads what it needs from the
database or tells its clients to pull. Fields (every payload has ``v``, ``n`` and ``k``):

    v     1 (the format's version; a node ignores, and counts, payloads of a version it does not know)
    n     the sending node's id
    k     the kind, one of:
      "inbox"    u: {user_id: seq, ...}: these users (connected to the receiving node) have new inbox
                 entries, up to seq in the batch that sent it; f: {user_id: first, ...} (optional) for
                 those whose batch began below that seq, so the receiver pushes each of the batch's
                 messages, not the last alone. One per node per stored batch; a batch
                 whose users for one node would not fit in one payload sends several ("inbox" notices
                 are only ever split, never truncated).
      "replace"  u: user_id, c: client_id, g: generation: that session connected again on node n; the
                 receiver closes its connection of the session quietly if that connection's presence row
                 is older (smaller generation), as one node does when a device reconnects.
      "kick"     u, c, s: status (-6, -7, -3 ...): push ``kicked`` {code: s} to that session and close it.
      "close"    u, s: kick every connection of the user on the receiving node.
      "room"     r: chatroom_id, s: seq: the room's messages up to seq are in ``ember_cluster_room_messages``
                 (sent to each other node with a member present, one per room per stored batch); the
                 receiver reads those past the last it delivered and pushes them to its members, in seq order.
      "roomrec"  r: chatroom_id: the admin API changed (created, updated or destroyed) that room's record;
                 the receiver reads it again (gone: its members there get ``chatroom_quit``, destroyed).
      "ustatus"  u, s: the admin API set that user's status to s (muted users may not send to a room).
      "push"     (nothing more): rows for the receiving node's devices are in ``ember_cluster_pushes``
                 (live-only pushes: a deletion, a relation head, a transparent message); the receiver
                 reads and deletes them, in id order, and pushes each. One per node per written batch.

Example: {"v":1,"n":2,"k":"inbox","u":{"alice":41,"bob":7}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gateway.cluster.postgres.tables import Connection

FORMAT_VERSION = 1
MAX_PAYLOAD_BYTES = 7999  # PostgreSQL: "payload string too long" from 8000 bytes on


def channel_name(node_id: int) -> str:
    """The channel node ``node_id`` LISTENs on."""
    if not (isinstance(node_id, int) and 0 <= node_id <= 1023):
        raise ValueError("a node id is an integer in 0..1023")
    return f"ember_node_{node_id}"


@dataclass(frozen=True)
class InboxNotice:
    sender: int
    seqs: dict[str, int]  # user_id → highest seq stored for them in the batch
    firsts: dict[str, int] = field(default_factory=dict)  # user_id → lowest, where below the highest


@dataclass(frozen=True)
class ReplaceNotice:
    sender: int
    user_id: str
    client_id: str
    generation: int


@dataclass(frozen=True)
class KickNotice:
    sender: int
    user_id: str
    client_id: str
    status: int


@dataclass(frozen=True)
class CloseUserNotice:
    sender: int
    user_id: str
    status: int


@dataclass(frozen=True)
class RoomNotice:
    sender: int
    chatroom_id: str
    seq: int


@dataclass(frozen=True)
class RoomChangedNotice:
    sender: int
    chatroom_id: str


@dataclass(frozen=True)
class UserStatusNotice:
    sender: int
    user_id: str
    status: int


@dataclass(frozen=True)
class PushNotice:
    sender: int


Notice = (
    InboxNotice | ReplaceNotice | KickNotice | CloseUserNotice | RoomNotice | RoomChangedNotice | UserStatusNotice
    | PushNotice
)  # fmt: skip


def _dump(obj: dict[str, object]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def encode(notice: Notice) -> str:
    """One payload (an "inbox" notice too large for one raises: use ``encode_inbox``, which splits)."""
    head: dict[str, object] = {"v": FORMAT_VERSION, "n": notice.sender}
    match notice:
        case InboxNotice(seqs=seqs, firsts=firsts):
            body: dict[str, object] = {"k": "inbox", "u": seqs}
            if firsts:
                body["f"] = firsts
        case ReplaceNotice(user_id=u, client_id=c, generation=g):
            body = {"k": "replace", "u": u, "c": c, "g": g}
        case KickNotice(user_id=u, client_id=c, status=s):
            body = {"k": "kick", "u": u, "c": c, "s": s}
        case CloseUserNotice(user_id=u, status=s):
            body = {"k": "close", "u": u, "s": s}
        case RoomNotice(chatroom_id=r, seq=q):
            body = {"k": "room", "r": r, "s": q}
        case RoomChangedNotice(chatroom_id=r):
            body = {"k": "roomrec", "r": r}
        case UserStatusNotice(user_id=u, status=s):
            body = {"k": "ustatus", "u": u, "s": s}
        case PushNotice():
            body = {"k": "push"}
    payload = _dump(head | body)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError("notice payload over the NOTIFY limit")
    return payload


def encode_inbox(sender: int, seqs: dict[str, int], firsts: dict[str, int] | None = None) -> list[str]:
    """The "inbox" payloads for one node: as few as fit ``MAX_PAYLOAD_BYTES`` (one, unless very many users).

    ``firsts``: each user's lowest seq in the batch; carried ("f") only where below the highest."""
    lows = {u: f for u, f in (firsts or {}).items() if u in seqs and f < seqs[u]}
    overhead = len(_dump({"v": FORMAT_VERSION, "n": sender, "k": "inbox", "u": {}, "f": {}}).encode())
    payloads: list[str] = []
    chunk: dict[str, int] = {}
    chunk_lows: dict[str, int] = {}
    size = overhead
    for user_id, seq in seqs.items():
        entry = len(_dump({user_id: seq}).encode()) - 1  # '"id":seq' plus one separator ("," or a brace)
        if user_id in lows:
            entry += len(_dump({user_id: lows[user_id]}).encode()) - 1
        if chunk and size + entry > MAX_PAYLOAD_BYTES:
            payloads.append(encode(InboxNotice(sender, chunk, chunk_lows)))
            chunk, chunk_lows, size = {}, {}, overhead
        chunk[user_id] = seq
        if user_id in lows:
            chunk_lows[user_id] = lows[user_id]
        size += entry
    if chunk:
        payloads.append(encode(InboxNotice(sender, chunk, chunk_lows)))
    return payloads


def decode(payload: str) -> Notice | None:
    """The notice in a payload, or None for one this node cannot read (another version, garbage)."""
    try:
        obj = json.loads(payload)
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            return None
        sender, kind = obj["n"], obj["k"]
        if not isinstance(sender, int):
            return None
        if kind == "inbox":
            seqs, firsts = obj["u"], obj.get("f", {})
            if (
                isinstance(seqs, dict) and all(isinstance(s, int) for s in seqs.values())
                and isinstance(firsts, dict) and all(isinstance(f, int) for f in firsts.values())
            ):  # fmt: skip
                return InboxNotice(sender, seqs, firsts)
        elif kind == "replace" and _strs(obj["u"], obj["c"]) and isinstance(obj["g"], int):
            return ReplaceNotice(sender, obj["u"], obj["c"], obj["g"])
        elif kind == "kick" and _strs(obj["u"], obj["c"]) and isinstance(obj["s"], int):
            return KickNotice(sender, obj["u"], obj["c"], obj["s"])
        elif kind == "close" and _strs(obj["u"]) and isinstance(obj["s"], int):
            return CloseUserNotice(sender, obj["u"], obj["s"])
        elif kind == "room" and _strs(obj["r"]) and isinstance(obj["s"], int):
            return RoomNotice(sender, obj["r"], obj["s"])
        elif kind == "roomrec" and _strs(obj["r"]):
            return RoomChangedNotice(sender, obj["r"])
        elif kind == "ustatus" and _strs(obj["u"]) and isinstance(obj["s"], int):
            return UserStatusNotice(sender, obj["u"], obj["s"])
        elif kind == "push":
            return PushNotice(sender)
    except (ValueError, KeyError, TypeError):
        return None
    return None


def _strs(*values: object) -> bool:
    return all(isinstance(v, str) for v in values)


def send_notice(conn: Connection, node_id: int, notice: Notice) -> None:
    """``pg_notify`` one notice to a node, in the caller's transaction (delivered only if it commits)."""
    conn.execute("SELECT pg_notify(%s, %s)", (channel_name(node_id), encode(notice)))
