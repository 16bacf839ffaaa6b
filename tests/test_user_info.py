"""get_user_info over a real connection: who sees which fields (issue 9's privacy rule, SPEC §6)."""

from __future__ import annotations

import pytest
import trio

from gateway.config import ConfigError, UserConfig
from tests.harness import RawClient, start_gateway
from tests.test_gateway_limits import roundtrip

CONTACT = {"mobile": "+86 138 0000 0000", "email": "bob@example.com", "address": "1 Fire Road"}


async def _ask(nursery: trio.Nursery, tmp_path, asker: str, **user_section) -> dict:
    gw = await start_gateway(nursery, tmp_path, user=user_section)
    await gw.user("alice", name="Alice")
    await gw.user("bob", name="Bob", company="Ember", **CONTACT)
    client = await RawClient.connected(gw, await gw.token(asker))
    answer = await roundtrip(client, "get_user_info", {"user_ids": ["bob"]})
    await client.aclose()
    assert answer.code == 0
    (bob,) = answer.result["users"]
    return bob


async def test_another_user_does_not_see_contact_details(nursery: trio.Nursery, tmp_path) -> None:
    bob = await _ask(nursery, tmp_path, "alice")
    assert bob["name"] == "Bob" and bob["company"] == "Ember" and bob["user_id"] == "bob"
    assert "updated_at" in bob
    for field in CONTACT:
        assert field not in bob


async def test_a_user_sees_all_of_its_own_info(nursery: trio.Nursery, tmp_path) -> None:
    bob = await _ask(nursery, tmp_path, "bob")
    for field, value in CONTACT.items():
        assert bob[field] == value


async def test_public_fields_decides_what_others_see(nursery: trio.Nursery, tmp_path) -> None:
    bob = await _ask(nursery, tmp_path, "alice", public_fields="name, email")
    assert bob == {"user_id": "bob", "name": "Bob", "email": CONTACT["email"], "updated_at": bob["updated_at"]}


def test_an_unknown_public_field_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="password"):
        UserConfig(public_fields="name,password")
