"""Admin endpoints for channels (docs/ADMIN_API.md "Channels")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from protocol.codec import Fields
from protocol.codes import ConversationType, ErrorCode
from protocol.errors import FieldError

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    from gateway.domain.channels import ChannelService


def routes(channels: ChannelService) -> APIRouter:
    """Channels: create, destroy, info, a post as the owner, the listeners (every right: only facts checked)."""
    from storage import channels as db

    api = APIRouter(prefix="/admin/channel", responses=SIGNED_RESPONSES)
    messages = channels.messages

    @api.post("/create", response_model=m.Answer[m.ChannelCreated])
    async def channel_create(req: m.ChannelCreate) -> dict[str, Any]:
        """Create a channel owned by ``owner`` (251 if the id is taken, 253 if the owner is no user)."""
        fields = req.model_dump(exclude={"owner", "channel_id"})
        try:
            code, result = await channels.create(req.owner, req.channel_id, fields, admin=True)
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        return answer(code, result)

    @api.post("/destroy", response_model=m.Answer[None])
    async def channel_destroy(req: m.ChannelId) -> dict[str, Any]:
        """Destroy the channel: its listeners stop listening (their scope 9 settings go); then 253."""
        channel = await channels.store.read(db.get_channel, req.channel_id)
        if channel is None or channel.destroyed:
            return answer(ErrorCode.NOT_EXIST)
        code, _ = await channels.destroy(channel.owner, req.channel_id, admin=True)
        return answer(code)

    @api.post("/info", response_model=m.Answer[m.ChannelOut])
    async def channel_info(req: m.ChannelId) -> dict[str, Any]:
        """The channel's info, its callback URL and how many listen (253 if unknown or destroyed)."""
        code, result = await channels.info(None, req.channel_id)
        return answer(code, result["channel"] if result else None)

    @api.post("/post", response_model=m.Answer[m.MessageAck])
    async def channel_post(req: m.ChannelPost) -> dict[str, Any]:
        """Post as the channel's owner; stored and pushed like the owner's own post."""
        channel = await channels.store.read(db.get_channel, req.channel_id)
        if channel is None or channel.destroyed:
            return answer(ErrorCode.NOT_EXIST)
        send = m.MessageSend(
            sender=channel.owner, conv=m.ConversationIn(type=int(ConversationType.CHANNEL), target=req.channel_id),
            content=req.content, to_users=req.to_users, client_msg_id=req.client_msg_id,
        )  # fmt: skip
        try:
            msg = messages.outgoing(channel.owner, Fields(send.params()))
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        code, ack = await messages.send(msg)
        if code != ErrorCode.SUCCESS or ack is None:
            return answer(code)
        return answer(result={**ack, "message_id": str(ack["message_id"])})

    @api.post("/listeners", response_model=m.Answer[m.ChannelListenersOut])
    async def channel_listeners(req: m.ChannelListenersQuery) -> dict[str, Any]:
        """A page of the listeners, by user id (managers flagged)."""
        code, result = await channels.listeners(req.channel_id, req.after_user, req.limit)
        return answer(code, result)

    return api
