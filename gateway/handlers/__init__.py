"""Request handlers, one module per subject; importing this package registers them."""

from gateway.handlers import channels, chatrooms, conversations, groups, messages, push, relations, users  # noqa: F401
