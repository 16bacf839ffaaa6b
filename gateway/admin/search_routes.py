"""Admin endpoints for message search (docs/ADMIN_API.md "Search"): everyone's, one user's, and the rebuild."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from gateway.domain import search
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    from storage import Store

log = logging.getLogger("ember.admin")

#: A rebuild logs its progress every this many messages.
PROGRESS_EVERY = 50_000


def routes(store: Store) -> APIRouter:
    api = APIRouter(prefix="/admin/message", responses=SIGNED_RESPONSES)

    async def run(params: dict[str, Any], user_id: str | None) -> dict[str, Any]:
        try:
            query = search.read_search(Fields(params), user_id)
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        page = await search.search(store, query)
        results = [
            {
                "message_id": str(found.message.message_id),
                "conv": {"type": found.message.conv.type, "target": found.message.conv.target,
                         "line": found.message.conv.line},
                "from_user": found.message.from_user,
                "server_time": found.message.server_time,
                "content_type": found.message.content.get("type", 0),
                "searchable_content": found.text,
                "highlights": found.highlights,
            }
            for found in page.found
        ]  # fmt: skip
        return answer(result={"results": results, "next_cursor": page.next_cursor})

    @api.post("/search", response_model=m.Answer[m.SearchResult])
    async def message_search(req: m.MessageSearch) -> dict[str, Any]:
        """Every user's messages that hold the keyword, newest first (moderation, app servers)."""
        return await run(req.model_dump(exclude_none=True), None)

    @api.post("/search_user", response_model=m.Answer[m.SearchResult])
    async def message_search_user(req: m.MessageSearchUser) -> dict[str, Any]:
        """One user's messages that hold the keyword, exactly as their own search_messages finds them."""
        params = req.model_dump(exclude_none=True)
        return await run(params, params.pop("user_id"))

    @api.post("/search_rebuild", response_model=m.Answer[m.SearchRebuilt])
    async def message_search_rebuild(req: m.SearchRebuild) -> dict[str, Any]:
        """Re-index every stored message from its content, in small writer steps (sends go on meanwhile)."""
        logged = 0

        def progress(last_id: int, indexed: int) -> None:
            nonlocal logged
            if indexed - logged >= PROGRESS_EVERY:
                logged = indexed
                log.info("search rebuild: %d messages indexed, up to message %d", indexed, last_id)

        indexed = await store.rebuild_search(progress)
        log.info("search rebuild: done, %d messages indexed", indexed)
        return answer(result={"indexed": indexed})

    return api
