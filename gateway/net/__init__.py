"""Transports under the connection: how protocol frames reach a peer (``transport``: the interface and TCP;
``websocket``: the HTTP upgrade and one frame per WebSocket message)."""
