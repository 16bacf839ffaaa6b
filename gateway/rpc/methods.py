"""The gateway's method table: every handler module, listed, and the one registry built from them.

A new handler module is added to ``HANDLER_MODULES`` (tests/test_import_graph.py fails on a module of
``gateway/rpc/handlers`` missing from it). ``gateway.rpc.dispatch`` defines the registry and imports no handler.
"""

from __future__ import annotations

from gateway.rpc.dispatch import MethodRegistry
from gateway.rpc.handlers import channels, chatrooms, conversations, groups, messages, push, relations, users

HANDLER_MODULES = (channels, chatrooms, conversations, groups, messages, push, relations, users)

#: What the connections dispatch requests through (and count in metrics by, as method or "unknown").
METHODS = MethodRegistry(HANDLER_MODULES)
