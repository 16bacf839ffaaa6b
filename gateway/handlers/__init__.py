"""Request handlers, one module per subject; importing this package registers them."""

from gateway.handlers import groups, messages, users  # noqa: F401
