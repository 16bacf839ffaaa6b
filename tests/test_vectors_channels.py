"""docs/PROTOCOL.md §15.8 stays true: the channel vectors match what the code makes, and decode as documented."""

from __future__ import annotations

import json

import msgpack

from tests import vectors_channels as v

TEXT = v.DOC.read_text(encoding="utf-8")
BLOCKS = v.read_blocks(TEXT)


def doc(name: str) -> bytes:
    return bytes.fromhex("".join(BLOCKS[name].split()))


def test_the_doc_has_every_channel_vector_and_they_are_fresh() -> None:
    assert set(BLOCKS) == {"channel_inputs", *v.OUTPUTS}
    assert json.loads(BLOCKS["channel_inputs"]) == v.INPUTS
    assert v.rewrite(TEXT) == TEXT  # what `tests/vectors_channels.py --check` checks


def test_the_vectors_decode_as_section_15_says() -> None:
    assert msgpack.unpackb(doc("create_request_plaintext")) == {
        "m": "create_channel", "p": {"channel_id": "news", "name": "News", "desc": "daily news", "private": True},
    }  # fmt: skip
    info = msgpack.unpackb(doc("info_response_plaintext"))
    assert info["c"] == 0 and list(info["r"]) == ["info_version", "channel"] and info["r"]["info_version"] == 2
    assert list(info["r"]["channel"]) == [
        "channel_id", "name", "portrait", "desc", "extra", "owner", "private", "callback_only", "state",
        "info_version", "created_at", "updated_at", "callback", "listener_count",
    ]  # fmt: skip
    assert info["r"]["channel"]["private"] is True and info["r"]["channel"]["listener_count"] == 3
    notify = msgpack.unpackb(doc("listener_notify_plaintext"))
    assert notify["t"] == "msg" and notify["d"]["seq"] == 9
    message = notify["d"]["message"]
    assert list(message) == ["message_id", "conv", "from", "content", "server_time", "to_users"]
    assert message["conv"] == {"type": 3, "target": "news", "line": 0} and message["to_users"] == ["alice"]
    mine = msgpack.unpackb(doc("my_channels_response_plaintext"))
    assert mine == {"c": 0, "r": {"owned": [{"channel_id": "news", "info_version": 2}], "listened": []}}
