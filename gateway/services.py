"""Everything a request handler or the admin API may use, in one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import storage
from gateway.clock import Clock
from gateway.config import Config
from gateway.messaging import MessageService
from gateway.relations import RelationService
from gateway.router import Router
from gateway.sessions import SessionService

if TYPE_CHECKING:
    from gateway.chatrooms import ChatroomService


@dataclass
class Services:
    config: Config
    store: storage.Store
    clock: Clock
    router: Router
    sessions: SessionService
    messages: MessageService
    token_key: bytes
    chatrooms: ChatroomService | None = None
    #: Friends, friend requests, blacklists and settings; built from the fields above.
    relations: RelationService = field(init=False)

    def __post_init__(self) -> None:
        self.relations = RelationService(self.config, self.store, self.router, self.clock)
