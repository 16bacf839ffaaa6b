"""The protocol's hardening, end to end against the gateway.

- the gateway's configuration cannot announce a keepalive the protocol's clients refuse.
"""

from __future__ import annotations

import pytest

from gateway.config import Config, ConfigError
from protocol.connection import MAX_KEEPALIVE_SECONDS

# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["keepalive_seconds", "min_keepalive_seconds", "max_keepalive_seconds"])
def test_config_keepalive_is_bounded_by_what_clients_accept(key: str) -> None:
    top = {"keepalive_seconds": MAX_KEEPALIVE_SECONDS, "max_keepalive_seconds": MAX_KEEPALIVE_SECONDS}
    assert getattr(Config.default(server={**top, key: MAX_KEEPALIVE_SECONDS}).server, key) == 3600
    with pytest.raises(ConfigError, match=f"server.{key}: must be at most {MAX_KEEPALIVE_SECONDS}"):
        Config.default(server={**top, key: MAX_KEEPALIVE_SECONDS + 1})
