"""Robots (issue 22): bot users with their own signed API and a callback.

A robot is a user of type robot (``UserType.ROBOT``, shown in user info) with an owner, a secret and a
callback URL (``storage.robots``). It acts through the robot API (``gateway/admin/robot_routes.py``,
``/robot/...`` on the admin port), signed like the admin API but with its own secret: it has a normal
user's rights, never the admin's. Every rule it meets is the one a client meets (``MessageService`` for
sends, recalls and updates, ``GroupService`` for group operations, with the robot as operator).

The service keeps every robot in memory (``load`` at start, then each admin change): the signature check
looks up a robot's secret on every call, and the delivery path (``MessageService.deliver``) asks, per
stored message, which of its owners are robots with a callback. With no robots that is one empty-dict
test per delivery and no outbound traffic at all.

**The callback.** A message stored for a robot's inbox (a private message to it, a group or channel
message where it is a member, its notifications), other than its own, is handed to
``Webhooks.robot_message``: POSTed, signed with the robot's secret, to its callback URL if the host is in
``callback.robot_hosts``. A 2xx answer ``{"reply": <content>}`` is sent as the robot's reply to that
message (``reply``): the "webhook robot", whose whole server is one HTTP handler. A reply to a message
from another robot is not sent (two echo bots would answer each other forever); it is counted.

Single-process assumption: the robot cache is this process's, kept current by this process's admin API;
several nodes would each reload it on a change (a pub/sub notice) or read the secret from storage per call.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from gateway.domain.messaging import CHATROOM, RequestRejected
from protocol.codec import Fields
from protocol.codes import ConversationType, ErrorCode, PersistFlag, UserType
from protocol.errors import FieldError
from storage import robots as db
from storage.messages import Outgoing, SendResult, StoredMessage, held_message
from storage.records import UserRecord
from storage.sealing import SecretSeal

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.domain.messaging import MessageService
    from gateway.domain.sessions import SessionService
    from gateway.webhooks import Webhooks
    from storage import Store

log = logging.getLogger("ember.robots")

PRIVATE: Final = int(ConversationType.PRIVATE)
TRANSPARENT: Final = int(PersistFlag.TRANSPARENT)
#: Bytes of a generated secret (as hex: 64 characters).
SECRET_BYTES: Final = 32
MAX_SECRET: Final = 256
MAX_CALLBACK: Final = 2048


def check_callback(field: str, url: str) -> None:
    if len(url) > MAX_CALLBACK or (url and not url.startswith(("http://", "https://"))):
        raise FieldError(field, f"must be an http:// or https:// URL of at most {MAX_CALLBACK} characters (or empty)")


def robot_view(robot: db.RobotRecord) -> dict[str, Any]:
    """A robot as the admin API and the robot's own profile show it: never the secret."""
    return {
        "robot_id": robot.robot_id,
        "owner": robot.owner,
        "callback": robot.callback,
        "robot_extra": robot.robot_extra,
        "created_at": robot.created_at,
        "updated_at": robot.updated_at,
    }


def callback_payload(robot_id: str, msg: Outgoing, seq: int) -> dict[str, Any]:
    """What a robot's callback URL gets for one message (docs/ADMIN_API.md "Robots")."""
    content = dict(msg.content)
    if "data" in content:
        content["data"] = base64.b64encode(content["data"]).decode("ascii")
    conv = msg.conv
    # The robot's view: a private chat is named after the other party, as clients see it.
    target = msg.from_user if conv.type == PRIVATE else conv.target
    mentioned = content.get("mentioned_type") == 2 or robot_id in content.get("mentioned_targets", ())
    return {
        "robot_id": robot_id,
        "message_id": str(msg.message_id),
        "sender": msg.from_user,
        "conversation": {"type": conv.type, "target": target, "line": conv.line},
        "content": content,
        "server_time": msg.server_time,
        "seq": seq,
        "mentioned": bool(mentioned),
    }


class RobotService:
    """Robots for the admin API, the robot API's credentials, and the callback of each stored message."""

    def __init__(
        self, config: Config, store: Store, messages: MessageService, sessions: SessionService, clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.messages = messages
        self.sessions = sessions
        self.clock = clock
        self.robots: dict[str, db.RobotRecord] = {}
        #: robot id → record, only robots with a callback URL: what the delivery path looks at.
        self.with_callback: dict[str, db.RobotRecord] = {}
        self.webhooks: Webhooks | None = None
        # Counters (tests, /metrics later).
        self.callbacks_handed = 0
        self.replies_sent = 0
        self.replies_refused = 0  # bad reply bodies, refused sends, replies to robots

    async def load(self) -> None:
        for robot in await self.store.read(db.all_robots, self.store.robot_seal):
            self._keep(robot)

    def _keep(self, robot: db.RobotRecord) -> None:
        self.robots[robot.robot_id] = robot
        if robot.callback:
            self.with_callback[robot.robot_id] = robot
        else:
            self.with_callback.pop(robot.robot_id, None)
        self._hook()

    def _forget(self, robot_id: str) -> None:
        self.robots.pop(robot_id, None)
        self.with_callback.pop(robot_id, None)
        self._hook()

    def _seal(self) -> SecretSeal:
        if self.store.robot_seal is None:  # a store opened without token.key: no secret can be kept
            raise RequestRejected(ErrorCode.SERVER_ERROR)
        return self.store.robot_seal

    def _hook(self) -> None:
        """The delivery path calls us only while some robot has a callback: otherwise it costs nothing."""
        self.messages.robot_hook = self.message_stored if self.with_callback else None

    def secret_of(self, robot_id: str) -> bytes | None:
        """The key that signs this robot's API calls (``auth.SignatureMiddleware``); None: no such robot."""
        robot = self.robots.get(robot_id)
        # A secret that did not open (another server's key) signs nothing: the robot is refused.
        return None if robot is None or robot.secret is None else robot.secret.encode("utf-8")

    # --- the admin API --------------------------------------------------------------------------

    async def create(
        self, owner: str, robot_id: str | None, secret: str | None, callback: str, robot_extra: str,
        info: dict[str, Any],
    ) -> tuple[int, Any]:  # fmt: skip
        """Create the robot and its user; the result carries the secret (shown this once)."""
        check_callback("callback", callback)
        now = self.clock.now_ms()
        rid = robot_id or "robot-" + secrets.token_hex(8)
        record = db.RobotRecord(rid, owner, secret or secrets.token_hex(SECRET_BYTES), callback, robot_extra, now, now)
        user = UserRecord(rid, created_at=now, updated_at=now, type=int(UserType.ROBOT), **info)
        verdict = await self.store.run(db.create_robot, self._seal(), record, user)
        if verdict == "no_owner":
            return ErrorCode.NOT_EXIST, None
        if verdict == "taken":
            return ErrorCode.INVALID_PARAMETER, "robot_id: already a user"
        self._keep(record)
        return ErrorCode.SUCCESS, {"robot_id": rid, "secret": record.secret}

    async def update(self, robot_id: str, fields: dict[str, Any], rotate_secret: bool) -> tuple[int, Any]:
        """Change owner, callback, robot_extra or the secret (given, or a new one with ``rotate_secret``)."""
        if "callback" in fields:
            check_callback("callback", fields["callback"])
        if rotate_secret and "secret" not in fields:
            fields["secret"] = secrets.token_hex(SECRET_BYTES)
        if "owner" in fields and not await self.store.get_user(fields["owner"]):
            return ErrorCode.NOT_EXIST, None
        robot = await self.store.run(db.update_robot, self._seal(), robot_id, fields, self.clock.now_ms())
        if robot is None:
            return ErrorCode.NOT_EXIST, None
        self._keep(robot)
        result: dict[str, Any] = {"robot_id": robot_id}
        if "secret" in fields:
            result["secret"] = robot.secret
        return ErrorCode.SUCCESS, result

    async def destroy(self, robot_id: str) -> int:
        """End the robot's API access at once, then forbid its user (its devices, if any, are closed)."""
        self._forget(robot_id)  # before any await: the next call is refused, even one already in flight
        if not await self.store.run(db.destroy_robot, robot_id):
            return ErrorCode.NOT_EXIST
        return await self.sessions.set_block_status(robot_id, 2)

    async def info(self, robot_id: str) -> dict[str, Any] | None:
        robot = await self.store.read(db.get_robot, self.store.robot_seal, robot_id)
        return None if robot is None else robot_view(robot)

    async def of_owner(self, owner: str) -> list[dict[str, Any]]:
        return [robot_view(r) for r in await self.store.read(db.robots_of, self.store.robot_seal, owner)]

    async def set_callback(self, robot_id: str, url: str) -> int:
        code, _ = await self.update(robot_id, {"callback": url}, False)
        return code

    # --- the callback (trio thread, after a commit; never blocks) ------------------------------

    def message_stored(self, msg: Outgoing, result: SendResult) -> None:
        """``MessageService.robot_hook``: hand each robot owner's copy of a stored message to its callback."""
        robots = self.with_callback
        if not robots or msg.persist_flag == TRANSPARENT or self.webhooks is None:
            return
        seqs = result.seqs
        if len(seqs) <= len(robots):
            found = [(robots[u], s) for u, s in seqs.items() if u in robots]
        else:
            found = [(r, seqs[rid]) for rid, r in robots.items() if rid in seqs]
        for robot, seq in found:
            if robot.robot_id == msg.from_user:
                continue  # its own message (another of its sends): never posted back
            if robot.secret is None:
                continue  # its stored secret did not open (another server's key): nothing to sign with
            self.callbacks_handed += 1
            on_answer = None
            if msg.from_user not in self.robots:
                on_answer = self._answer_handler(robot.robot_id, msg)
            self.webhooks.robot_message(
                robot.callback, robot.secret.encode("utf-8"), callback_payload(robot.robot_id, msg, seq), on_answer
            )

    def _answer_handler(self, robot_id: str, msg: Outgoing) -> Callable[[bytes], Any]:
        async def answered(body: bytes) -> None:
            try:
                answer = json.loads(body)
            except ValueError:
                self.replies_refused += 1
                return
            if not isinstance(answer, dict) or "reply" not in answer:
                return  # an answer without a reply is the normal case: the robot read the message
            if robot_id not in self.robots:
                return  # destroyed meanwhile
            code, _ = await self.reply_to(robot_id, msg, answer["reply"], to_sender_only=False)
            if code == ErrorCode.SUCCESS:
                self.replies_sent += 1
            else:
                self.replies_refused += 1
                log.info("robot %s: a callback reply was refused with %d", robot_id, code)

        return answered

    # --- the robot API --------------------------------------------------------------------------

    async def send(self, robot_id: str, params: dict[str, Any]) -> tuple[int, Any]:
        """``message/send`` as the robot (a client's rules). Raises FieldError (251)."""
        msg = self.messages.outgoing(robot_id, Fields(params))
        if msg.conv.type == CHATROOM:
            raise RequestRejected(ErrorCode.NOT_IMPLEMENTED)  # robots do not join chatrooms
        if msg.conv.type != PRIVATE and self.messages.fanout_backlogged:
            return ErrorCode.OVER_FREQUENCY, None
        return await self.messages.send(msg)

    async def reply(self, robot_id: str, message_id: int, content: Any, to_sender_only: bool, client_msg_id: str | None) -> tuple[int, Any]:
        """``message/reply``: to a message the robot holds, in its conversation (253 if it holds none)."""
        original = await self.store.read(held_message, robot_id, message_id)
        if original is None:
            return ErrorCode.NOT_EXIST, None
        return await self.reply_to(robot_id, original, content, to_sender_only, client_msg_id)

    async def reply_to(
        self, robot_id: str, original: Outgoing | StoredMessage, content: Any, to_sender_only: bool,
        client_msg_id: str | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        """Send ``content`` into ``original``'s conversation, as the robot sees it; ``to_sender_only``: in a
        group or channel, only its sender (and the robot) get it (``to_users``)."""
        conv = original.conv
        target = original.from_user if conv.type == PRIVATE else conv.target
        if conv.type == PRIVATE and original.from_user == robot_id:
            target = conv.target  # its own message: the reply goes to the same peer
        if isinstance(content, dict) and isinstance(content.get("data"), str):  # JSON carries data as base64
            try:
                content = {**content, "data": base64.b64decode(content["data"], validate=True)}
            except ValueError:
                return ErrorCode.INVALID_PARAMETER, "content.data: must be standard base64 text"
        params: dict[str, Any] = {
            "conv": {"type": conv.type, "target": target, "line": conv.line},
            "content": content,
        }
        if to_sender_only and conv.type != PRIVATE and original.from_user != robot_id:
            params["to_users"] = [original.from_user]
        if client_msg_id is not None:
            params["client_msg_id"] = client_msg_id
        try:
            return await self.send(robot_id, params)
        except FieldError as exc:
            return ErrorCode.INVALID_PARAMETER, f"{exc.field}: {exc.problem}"
        except RequestRejected as exc:
            return exc.code, None
