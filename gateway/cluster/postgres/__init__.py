"""The cluster's building blocks on PostgreSQL: node identity, presence, and notices by LISTEN/NOTIFY.

Several gateways on one database behave as one server when the database says who is where and PostgreSQL
carries the "something is waiting for you" hints between them (docs/ARCHITECTURE.md, "Delivery and the
cluster seam"). One module per part, each a newcomer can read alone:

- ``tables``: the cluster's tables, UNLOGGED runtime state created at node start (not a schema migration).
- ``nodes``: ``NodeLease``: this node claims its ``server.node_id`` (refused while another live node holds
  it, naming it) and renews one lease row per heartbeat, which is also the lease of all its presence rows.
- ``presence``: ``PresenceTable``: one row per live session; who is offline on every node in one query.
- ``notices``: the payload format, the channel names, ``notify_holders`` (the storage writer calls it in
  the transaction that stores a batch: one ``pg_notify`` per node per batch) and ``send_notice``.
- ``listener``: ``NoticeListener``: the dedicated LISTEN connection in a thread, reconnecting by itself,
  handing notices to trio through a bounded channel and calling ``on_resync`` after any gap.

Everything that touches the database here is synchronous psycopg 3 (its async API is asyncio-only): trio
code calls it through ``trio.to_thread`` (``ClusterDatabase`` in ``nodes``), never on the event loop.
"""
