"""The msg push encoded from a pre-packed message is byte-identical to encoding it whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.connection import encode_msg_push, encode_notify_body

messages = st.fixed_dictionaries(
    {
        "message_id": st.integers(0, 2**64 - 1),
        "conv": st.fixed_dictionaries(
            {"type": st.integers(0, 3), "target": st.text(min_size=1, max_size=64), "line": st.integers(0, 9)}
        ),
        "from": st.text(min_size=1, max_size=64),
        "content": st.dictionaries(st.text(max_size=20), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(), st.binary())),
        "server_time": st.integers(0, 2**63 - 1),
    }
)


@given(seq=st.integers(0, 2**63 - 1), message=messages)
def test_encode_msg_push_matches_encode_notify_body(seq: int, message: dict) -> None:
    assert encode_msg_push(seq, codec.pack(message)) == encode_notify_body("msg", {"seq": seq, "message": message})
