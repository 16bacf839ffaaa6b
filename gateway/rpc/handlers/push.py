"""The device's push token (SPEC §9): what the push webhook (gateway/webhooks.py) sends a push to."""

from __future__ import annotations

from typing import Any

from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode
from storage import push_tokens

#: Largest device token accepted (APNs tokens are 64 hex characters, FCM ones ~160; vendors' vary).
MAX_PUSH_TOKEN_LEN = 4096
#: ``push_type`` names the push service the app server's bridge should use (by convention 0 none or the
#: platform's default, 1 APNs, 2 FCM, then vendor services); the gateway passes it through.
MAX_PUSH_TYPE = 255


@method("set_push_token")
async def set_push_token(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{push_type: int 0..255, token: str} → null. An empty token removes the session's token."""
    push_type = params.integer("push_type", lo=0, hi=MAX_PUSH_TYPE)
    token = params.text("token", max_len=MAX_PUSH_TOKEN_LEN, printable=True)
    await services.store.run(
        push_tokens.set_push_token,
        caller.user_id, caller.client_id, push_type, token, services.clock.now_ms(),
    )  # fmt: skip
    return ErrorCode.SUCCESS, None
