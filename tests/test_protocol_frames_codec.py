"""protocol.frames and protocol.codec: strict decoding, nothing but ProtocolError / FieldError escapes."""

from __future__ import annotations

import math
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import Fields
from protocol.errors import FieldError, ProtocolError
from protocol.frames import (
    HEADER_SIZE,
    MAX_REQUEST_ID,
    Flags,
    FrameDecoder,
    FrameType,
    encode_frame,
    encode_header,
)

FAST = settings(max_examples=150, deadline=None)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def drain(decoder: FrameDecoder, chunks: list[bytes]) -> list:
    frames = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    return frames


# --- FrameDecoder -------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_decoder_on_arbitrary_bytes_raises_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame_bytes=256)
    try:
        drain(decoder, chunked(data, cuts))
    except ProtocolError:
        pass


@FAST
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_decoder_on_valid_headers_with_junk_raises_only_protocol_error(body: bytes, cuts: list[int]) -> None:
    # Arbitrary bytes rarely get past the magic; start from a plausible header instead.
    data = b"EM\x01" + body
    try:
        drain(FrameDecoder(max_frame_bytes=256), chunked(data, cuts))
    except ProtocolError:
        pass


frame_types = st.sampled_from(list(FrameType))
frame_specs = st.tuples(
    frame_types,
    st.sampled_from([0, int(Flags.ENCRYPTED)]),
    st.integers(min_value=0, max_value=MAX_REQUEST_ID),
    st.binary(max_size=200),
)


@FAST
@given(st.lists(frame_specs, max_size=6), st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_frames_round_trip_in_any_chunking(specs: list, cuts: list[int]) -> None:
    wire = b"".join(encode_header(t, f, r, len(b)) + b for t, f, r, b in specs)
    frames = drain(FrameDecoder(), chunked(wire, cuts))
    assert [(f.type, f.flags, f.request_id, f.body) for f in frames] == specs
    for frame, (t, f, r, b) in zip(frames, specs, strict=True):
        assert frame.header == encode_header(t, f, r, len(b))
        assert frame.encrypted == bool(f)


def test_header_layout() -> None:
    header = encode_header(FrameType.RESPONSE, Flags.ENCRYPTED, 0x01020304, 0x0A0B0C0D)
    assert header == bytes.fromhex("454d 01 05 01 00 01020304 0a0b0c0d")
    assert HEADER_SIZE == 14
    assert (
        encode_frame(FrameType.PING, b"xy", request_id=7)
        == bytes.fromhex("454d0107000000000007 00000002") + b"xy"
    )


def test_frames_byte_by_byte_and_two_in_one_chunk() -> None:
    wire = encode_frame(FrameType.HELLO, b"abc") + encode_frame(FrameType.CONNECT, b"", request_id=9)
    decoder = FrameDecoder()
    frames = drain(decoder, [wire[k : k + 1] for k in range(len(wire))])
    assert [(f.type, f.request_id, f.body) for f in frames] == [
        (FrameType.HELLO, 0, b"abc"),
        (FrameType.CONNECT, 9, b""),
    ]
    assert decoder.buffered == 0
    assert len(drain(FrameDecoder(), [wire])) == 2


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"XM\x01\x01\x00\x00" + bytes(8), "bad magic"),
        (b"EM\x02\x01\x00\x00" + bytes(8), "version"),
        (b"EM\x01\x00\x00\x00" + bytes(8), "unknown frame type"),
        (b"EM\x01\x0b\x00\x00" + bytes(8), "unknown frame type"),
        (b"EM\x01\x01\x02\x00" + bytes(8), "flags"),
        (b"EM\x01\x01\x00\x01" + bytes(8), "flags"),
    ],
)
def test_bad_headers_are_refused(header: bytes, reason: str) -> None:
    decoder = FrameDecoder()
    decoder.feed(header)
    with pytest.raises(ProtocolError, match=reason):
        decoder.next_frame()


def test_bad_magic_is_refused_from_the_first_byte() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"G")
    with pytest.raises(ProtocolError, match="magic"):
        decoder.next_frame()
    decoder = FrameDecoder()
    decoder.feed(b"E")
    assert decoder.next_frame() is None
    decoder.feed(b"X")
    with pytest.raises(ProtocolError, match="magic"):
        decoder.next_frame()


def test_oversize_length_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    decoder.feed(encode_header(FrameType.REQUEST, 1, 1, 1001))  # only the header: no body at all
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.next_frame()
    ok = FrameDecoder(max_frame_bytes=1000)
    ok.feed(encode_header(FrameType.REQUEST, 1, 1, 1000))
    assert ok.next_frame() is None  # at the limit: waits for the body


def test_max_length_header_refused_with_default_limit() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">2sBBBBII", b"EM", 1, 4, 1, 0, 1, 0xFFFF_FFFF))
    with pytest.raises(ProtocolError):
        decoder.next_frame()


# --- codec --------------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_unpack_on_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        codec.unpack(data)
    except ProtocolError:
        pass


@FAST
@given(st.binary(max_size=300))
def test_unpack_map_on_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        codec.unpack_map(data)
    except ProtocolError:
        pass


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
trees = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@FAST
@given(trees)
def test_codec_round_trips_trees(value: object) -> None:
    assert codec.unpack(codec.pack(value)) == value


@given(st.floats(allow_nan=True))
def test_codec_round_trips_floats_including_nan(value: float) -> None:
    back = codec.unpack(codec.pack(value))
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_pack_writes_bin_for_bytes_and_str_for_text() -> None:
    assert codec.pack(b"\x01") == b"\xc4\x01\x01"
    assert codec.pack("a") == b"\xa1a"


@pytest.mark.parametrize(
    "wide",
    [
        b"\xcf" + (5).to_bytes(8, "big"),  # uint64 5
        b"\xd3" + (5).to_bytes(8, "big"),  # int64 5
        b"\xcd\x00\x05",  # uint16 5
    ],
)
def test_unpack_accepts_any_integer_width(wide: bytes) -> None:
    assert codec.unpack(wide) == 5


def test_unpack_accepts_wide_strings_bins_and_maps() -> None:
    # map32 {str32 "k": bin32 "hi"}
    body = b"\xdf\x00\x00\x00\x01" + b"\xdb\x00\x00\x00\x01k" + b"\xc6\x00\x00\x00\x02hi"
    assert codec.unpack(body) == {"k": b"hi"}


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"\x01\x02",  # trailing bytes
        b"\xd6\xff\x00\x00\x00\x01",  # timestamp extension
        b"\xd4\x01\x00",  # fixext1
        b"\xc7\x00\x05",  # ext8 of length 0
        b"\x81\x01\x02",  # map with an int key
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xc1",  # never-used byte
        b"\x91" * 2000 + b"\xc0",  # nesting too deep
        b"\xdd" + (10_001).to_bytes(4, "big") + b"\xc0" * 10_001,  # array over the item bound
        b"\xdb\xff\xff\xff\xff",  # a 4 GiB string that is not there
    ],
)
def test_unpack_refuses(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.unpack(data)


@pytest.mark.parametrize(
    "value",
    [
        {b"k": 1},  # bin 8 key
        {"ok": {b"k": 1}},  # nested
        {"ok": [1, {"x": 2, b"k": 3}]},  # in a map in an array
        [{b"": None}],
        {"heads": {b"msg": 5}},
    ],
)
def test_unpack_refuses_bin_map_keys_anywhere(value: object) -> None:
    # strict_map_key lets bin keys through as bytes; no decoded map may hold one.
    with pytest.raises(ProtocolError):
        codec.unpack(codec.pack(value))


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\xc5\x00\x01k\x01",  # bin 16 key
        b"\x81\xc6\x00\x00\x00\x01k\x01",  # bin 32 key
        b"\xdf\x00\x00\x00\x01\xc4\x01k\x01",  # bin key in a map32
    ],
)
def test_unpack_refuses_bin_keys_of_any_width(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.unpack(data)


@pytest.mark.parametrize(
    "value",
    [
        {"data": b"\x00\x01", "m": {"k": b"v"}},  # bin values are fine: only keys must be str
        {"t": "Ąś ƒ"},  # UTF-8 holding the bin marker bytes c4, c5, c6 without any bin
        {"n": 0xC4C5C6, "k": [b"", {"x": b"y"}]},
    ],
)
def test_unpack_keeps_bin_values_and_marker_bytes(value: object) -> None:
    assert codec.unpack(codec.pack(value)) == value


@FAST
@given(
    st.recursive(
        scalars,
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.text(max_size=3) | st.binary(max_size=2), c, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_no_decoded_map_holds_a_non_str_key(value: object) -> None:
    def keys_ok(v: object) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and keys_ok(x) for k, x in v.items())
        if isinstance(v, list):
            return all(keys_ok(x) for x in v)
        return True

    try:
        decoded = codec.unpack(codec.pack(value))
    except ProtocolError:
        assert not keys_ok(value)
        return
    assert keys_ok(decoded)


def test_unpack_map_refuses_non_maps() -> None:
    with pytest.raises(ProtocolError, match="not a map"):
        codec.unpack_map(codec.pack([1]))


# --- Fields -------------------------------------------------------------------------------------


def field_error(call, name: str) -> FieldError:
    with pytest.raises(FieldError) as info:
        call()
    assert info.value.field == name
    assert name in str(info.value)
    return info.value


def test_fields_text() -> None:
    f = Fields({"s": "abc", "n": 1, "c": "a\x00b", "e": "", "b": b"abc", "nil": None})
    assert f.text("s") == "abc"
    assert f.text("missing", default="d") == "d"
    assert f.text("nil", default="d") == "d"  # nil counts as absent
    field_error(lambda: f.text("missing"), "missing")
    field_error(lambda: f.text("nil"), "nil")
    field_error(lambda: f.text("n"), "n")
    field_error(lambda: f.text("b"), "b")  # bin is not str
    field_error(lambda: f.text("s", max_len=2), "s")
    field_error(lambda: f.text("s", min_len=4), "s")
    field_error(lambda: f.text("c", printable=True), "c")
    # As documented: the empty string is printable; min_len=1 refuses it.
    assert f.text("e", printable=True) == ""
    field_error(lambda: f.text("e", min_len=1, printable=True), "e")


def test_fields_text_length_counts_code_points() -> None:
    f = Fields({"s": "鲍勃"})  # 2 code points, 6 UTF-8 bytes
    assert f.text("s", max_len=2) == "鲍勃"


def test_fields_integer() -> None:
    f = Fields({"i": 5, "t": True, "f": 1.0, "s": "5", "big": 2**64 - 1})
    assert f.integer("i", lo=5, hi=5) == 5
    field_error(lambda: f.integer("t"), "t")  # bool is not an integer
    field_error(lambda: f.integer("f"), "f")
    field_error(lambda: f.integer("s"), "s")
    field_error(lambda: f.integer("i", lo=6), "i")
    field_error(lambda: f.integer("i", hi=4), "i")
    field_error(lambda: f.integer("big"), "big")  # outside int64 by default
    assert f.integer("big", hi=2**64) == 2**64 - 1


def test_fields_boolean_binary_mapping_array() -> None:
    f = Fields({"b": False, "i": 0, "bin": b"xy", "s": "xy", "m": {"k": 1}, "a": [1, 2, 3]})
    assert f.boolean("b") is False
    assert f.boolean("missing", default=True) is True
    field_error(lambda: f.boolean("i"), "i")  # 0 is not false
    assert f.binary("bin", min_len=2, max_len=2) == b"xy"
    field_error(lambda: f.binary("s"), "s")  # str is not bin
    field_error(lambda: f.binary("bin", min_len=3), "bin")
    field_error(lambda: f.binary("bin", max_len=1), "bin")
    assert f.mapping("m").integer("k") == 1
    field_error(lambda: f.mapping("a"), "a")
    field_error(lambda: f.mapping("m").integer("zz"), "m.zz")  # nested names carry their path
    assert f.mapping("missing", default={}).raw == {}
    assert f.array("a", max_len=3) == [1, 2, 3]
    field_error(lambda: f.array("a", max_len=2), "a")
    field_error(lambda: f.array("m"), "m")


def test_fields_text_list() -> None:
    f = Fields({"ok": ["a", "b"], "int": ["a", 1], "empty": [""], "long": ["x" * 65], "ctl": ["a\n"]})
    assert f.text_list("ok", max_items=2) == ["a", "b"]
    field_error(lambda: f.text_list("ok", max_items=1), "ok")
    for bad in ("int", "empty", "long", "ctl"):
        field_error(lambda bad=bad: f.text_list(bad), bad)


def test_fields_ignore_unknown_keys() -> None:
    f = codec.unpack_map(msgpack.packb({"known": 1, "future": {"x": [1]}}))
    assert f.integer("known") == 1
    assert "future" in f


@FAST
@given(st.dictionaries(st.text(max_size=3), scalars | st.lists(scalars, max_size=3), max_size=4))
def test_fields_getters_raise_only_field_error(data: dict) -> None:
    f = Fields(data)
    for key in list(data) + ["absent"]:
        for getter, kwargs in (
            (f.text, {"min_len": 1, "max_len": 3, "printable": True}),
            (f.integer, {"lo": 0, "hi": 10}),
            (f.boolean, {}),
            (f.binary, {"max_len": 3}),
            (f.mapping, {}),
            (f.array, {"max_len": 2}),
            (f.text_list, {"max_items": 2}),
        ):
            try:
                getter(key, **kwargs)
            except FieldError as exc:
                assert exc.field == key


def test_the_integer_not_float_example_of_protocol_md_9_1() -> None:
    """PROTOCOL.md §9.1: an integer ≥ 2^32 goes out as uint64, never float64; the page's two byte strings are
    what they say (the reference encoder writes the first; the second, the same value as a float, is a 251)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    as_int, as_float = "cf0000019b76daa800", "cb4279b76daa800000"
    assert f"goes out as `{as_int}`, never as `{as_float}`" in doc
    assert msgpack.packb(1767225600000) == bytes.fromhex(as_int)
    assert codec.unpack(bytes.fromhex(as_int)) == 1767225600000
    assert codec.unpack(bytes.fromhex(as_float)) == 1767225600000.0
    body = codec.unpack_map(b"\x81\xa4time" + bytes.fromhex(as_float))
    with pytest.raises(FieldError, match="time: must be an integer"):
        body.integer("time")
    assert codec.unpack_map(b"\x81\xa4time" + bytes.fromhex(as_int)).integer("time") == 1767225600000
