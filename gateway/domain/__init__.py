"""The IM rules: messaging (validation, send rules, group commit, fan-out), groups, channels, chatrooms,
relations, conversations, sessions, search, robots and tombstone retention.

Each module decides what is allowed and what is stored; none knows about sockets or the wire (the client
request layer is ``gateway.rpc``, the transports ``gateway.net``), and live devices are reached only
through ``gateway.delivery``.
"""
