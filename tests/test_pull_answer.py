"""The pull answer is assembled from stored rows (gateway.domain.messaging.pack_pull_answer): same bytes as packing it."""

from __future__ import annotations

import json

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.messaging import pack_pull_answer
from protocol import codec
from protocol.connection import encode_response_body
from storage.messages import PulledRows, _message

ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=8)
contents = st.fixed_dictionaries(
    {"type": st.integers(0, 2**31 - 1)},
    optional={"searchable_content": st.text(max_size=30), "data": st.binary(max_size=10), "persist_flag": st.sampled_from([0, 1, 3])},
)


@st.composite
def rows(draw):
    seq = draw(st.integers(1, 2**40))
    to_users = draw(st.one_of(st.none(), st.lists(ids, min_size=1, max_size=3)))
    return (
        seq, draw(st.integers(1, 2**63 - 1)), draw(st.sampled_from([0, 1])), draw(ids), draw(st.integers(0, 5)),
        draw(ids), msgpack.packb(draw(contents), use_bin_type=True), draw(st.integers(0, 2**45)),
        json.dumps(to_users) if to_users else None, 3,
    )  # fmt: skip


@given(st.lists(rows(), max_size=5), st.integers(0, 2**40))
def test_the_assembled_answer_is_the_packed_answer(page: list, head: int) -> None:
    expected = codec.pack(
        {"messages": [{"seq": r[0], "message": _message(r[1:]).to_wire()} for r in page], "head": head}
    )
    packed = pack_pull_answer(PulledRows(page, head))
    assert packed.data == expected and packed.items == len(page)


def test_a_packed_result_makes_the_same_response_body_as_its_value() -> None:
    value = {"messages": [], "head": 7}
    for code in (0, 251):
        assert encode_response_body(code, codec.Packed(codec.pack(value))) == codec.pack({"c": code, "r": value})
