"""Everything a request handler or the admin API may use, in one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import storage
from gateway.clock import Clock
from gateway.config import Config
from gateway.delivery import Delivery
from gateway.domain.conversations import ConversationService
from gateway.domain.messaging import MessageService
from gateway.domain.relations import RelationService
from gateway.domain.sessions import SessionService
from gateway.domain.tombstones import TombstonePurge
from gateway.metrics import Metrics
from gateway.outbox import OutboxBudget
from gateway.webhooks import Webhooks

if TYPE_CHECKING:
    from gateway.domain.channels import ChannelService
    from gateway.domain.chatrooms import ChatroomService
    from gateway.domain.groups import GroupService
    from gateway.domain.robots import RobotService


@dataclass
class Services:
    config: Config
    store: storage.Store
    clock: Clock
    #: Who is online and the pushes, kicks and closes (gateway/delivery.py): the only way to live devices.
    delivery: Delivery
    sessions: SessionService
    messages: MessageService
    token_key: bytes
    #: Friends, friend requests, blacklists and settings; built from the fields above.
    relations: RelationService = field(init=False)
    groups: GroupService | None = None  # set by serve(); None only in services built without one
    chatrooms: ChatroomService | None = None  # set by serve(), like groups
    channels: ChannelService | None = None  # set by serve(), like groups
    robots: RobotService | None = None  # set by serve(), like groups
    #: The webhooks (gateway/webhooks.py); built from the fields above when not given.
    webhooks: Webhooks = field(default=None)  # type: ignore[assignment]
    #: Counters for /metrics (gateway/metrics.py).
    metrics: Metrics = field(default_factory=Metrics)

    #: Read and clear marks, the conversation list; built from the fields above.
    conversations: ConversationService = field(init=False)
    #: Removes tombstones past the retention (gateway/domain/tombstones.py); built from the fields above.
    tombstones: TombstonePurge = field(init=False)
    #: What every connection's outbox holds, and its bound (server.outbox_budget_bytes); built from config.
    outbox_budget: OutboxBudget = field(init=False)

    def __post_init__(self) -> None:
        self.relations = RelationService(self.config, self.store, self.delivery, self.clock)
        self.conversations = ConversationService(self.config, self.store, self.relations, self.clock)
        self.tombstones = TombstonePurge(self.config, self.store, self.clock)
        self.outbox_budget = OutboxBudget(self.config.server.outbox_budget_bytes, self.clock.now_ms)
        if self.webhooks is None:
            self.webhooks = Webhooks(self.config, self.clock, self.store, self.delivery)

    @property
    def group_service(self) -> GroupService:
        assert self.groups is not None, "no GroupService"
        return self.groups

    @property
    def channel_service(self) -> ChannelService:
        assert self.channels is not None, "no ChannelService"
        return self.channels
