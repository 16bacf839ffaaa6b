"""Client methods for channels (conversation type 3); docs/PROTOCOL.md §15 gives each one's shape.

An operation answers once its change, and the scope 8 / 9 settings it moved, have
committed; the user's other devices get a ``head`` push for their setting stream.
Posts go through ``send_message`` with ``conv.type`` 3 (``handlers/messages.py``).
Rules and codes: ``gateway.domain.channels``.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.channels import FIELDS, ChannelService
from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError

MAX_IDS = 2000


def _svc(services: Services) -> ChannelService:
    return services.channel_service


def _origin(caller: Caller) -> tuple[str, str]:
    return caller.user_id, caller.client_id


@method("create_channel")
async def create_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{channel_id?, name?, portrait?, desc?, extra?, private?, callback?, callback_only?} → {channel_id, info_version}."""
    fields = {name: params.raw[name] for name in FIELDS if params.raw.get(name) is not None}
    return await _svc(services).create(
        caller.user_id, params.identifier("channel_id", default=None), fields, origin=_origin(caller)
    )


@method("modify_channel")
async def modify_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{channel_id, field, value} → {info_version}."""
    name = params.text("field", max_len=32)
    if name not in FIELDS:
        raise FieldError("field", f"one of {sorted(FIELDS)}")
    if "value" not in params:
        params.text("value")  # raises: missing
    return await _svc(services).modify(
        caller.user_id, params.identifier("channel_id"), name, params.raw["value"], origin=_origin(caller)
    )


@method("destroy_channel")
async def destroy_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).destroy(caller.user_id, params.identifier("channel_id"), origin=_origin(caller))


@method("transfer_channel")
async def transfer_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).transfer(
        caller.user_id, params.identifier("channel_id"), params.identifier("new_owner"), origin=_origin(caller)
    )


@method("listen_channel")
async def listen_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).listen(caller.user_id, params.identifier("channel_id"), True, origin=_origin(caller))


@method("unlisten_channel")
async def unlisten_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).listen(
        caller.user_id, params.identifier("channel_id"), False, origin=_origin(caller)
    )


@method("invite_channel")
async def invite_channel(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).invite(
        caller.user_id, params.identifier("channel_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        origin=_origin(caller),
    )  # fmt: skip


@method("set_channel_managers")
async def set_channel_managers(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).set_managers(
        caller.user_id, params.identifier("channel_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        params.boolean("is_manager"), origin=_origin(caller),
    )  # fmt: skip


@method("get_channel_info")
async def get_channel_info(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{channel_id, info_version?} → {info_version, channel: map or nil when the version held is current}."""
    return await _svc(services).info(
        caller.user_id, params.identifier("channel_id"), params.integer("info_version", lo=0, hi=2**53, default=0)
    )


@method("get_my_channels")
async def get_my_channels(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{} → {owned: [{channel_id, info_version}], listened: [...]}."""
    return ErrorCode.SUCCESS, await _svc(services).mine(caller.user_id)
