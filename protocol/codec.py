"""MessagePack bodies and the validation of every field a peer sends.

Bodies are MessagePack maps with short string keys. Decoding is strict: map
keys must be ``str`` (anywhere in the value, so no decoded map holds a bytes
key), strings must be valid UTF-8, extension types are refused, and containers
are bounded. A decoded map is then read through ``Fields``,
which checks each field's type, length and range, so a handler never sees a
value it did not ask for.

Encoders must write ``bin`` for byte fields and ``str`` for text; decoders accept
any valid MessagePack width for integers (an int may arrive as uint64).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from .codes import MAX_ID_LEN, valid_id
from .errors import FieldError, ProtocolError

#: Bounds on any one decoded body, on top of the frame size limit.
MAX_CONTAINER_ITEMS = 10_000

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


def _refuse_bin_keys(value: dict[Any, Any]) -> dict[Any, Any]:
    # strict_map_key leaves only str and bytes keys; bytes come from bin keys.
    for key in value:
        if key.__class__ is not str:
            raise ValueError("map keys must be str")
    return value


# Every bin object starts with one of these bytes (bin 8/16/32). A body without any of them holds
# no bin key, so it is decoded without the per-map hook, which would cost a Python call per map.
# (``int in bytes`` is a memchr: three of them cost less than one hook call.)
_BIN8, _BIN16, _BIN32 = 0xC4, 0xC5, 0xC6


# One Packer for every call: building one per call (msgpack.packb) cost more than packing a small
# body does (0.63 vs 0.26 us). Safe from any thread: Packer.pack holds the interpreter lock from
# start to end (no ``default`` hook calls back into Python) and resets itself after an error.
_pack = msgpack.Packer(use_bin_type=True).pack


def pack(obj: Any) -> bytes:
    """Encode a body. ``bytes`` become ``bin``, ``str`` become ``str``."""
    return _pack(obj)


_header_packer = msgpack.Packer(use_bin_type=True)
#: The header of a map of n pairs / an array of n items: for bodies assembled from parts already packed.
map_header = _header_packer.pack_map_header
array_header = _header_packer.pack_array_header


class Packed:
    """A value already encoded as MessagePack, to go into a RESPONSE as it is.

    ``ServerConnection.response`` splices ``data`` in as the result instead of
    packing it; ``items`` says how much it holds (a pull: its messages), for
    the rate limit.
    """

    __slots__ = ("data", "items")

    def __init__(self, data: bytes, items: int = 0) -> None:
        self.data = data
        self.items = items


def unpack(data: bytes) -> Any:
    """Decode one complete MessagePack value.

    Raises:
        ProtocolError: for anything that is not exactly one well-formed value
            within the bounds above. No other exception escapes.
    """
    hook = _refuse_bin_keys if (_BIN8 in data or _BIN16 in data or _BIN32 in data) else None
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            object_hook=hook,
            use_list=True,
            ext_hook=_refuse_ext,
            timestamp=0,
            max_str_len=len(data),
            max_bin_len=len(data),
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
            max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types; our contract is one
        raise ProtocolError(f"malformed body: {type(exc).__name__}") from None


def unpack_map(data: bytes) -> Fields:
    """Decode a body that must be a map, and wrap it for validated reads."""
    value = unpack(data)
    if not isinstance(value, dict):
        raise ProtocolError("body is not a map")
    return Fields(value)


_MISSING = object()


class Fields:
    """Validated, typed access to a decoded map.

    Every getter raises ``FieldError`` naming the field when the value is
    missing (and no default was given) or of the wrong type, size or range.
    Unknown keys are ignored, so newer peers may add fields.
    """

    __slots__ = ("_data", "_prefix")

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self._data = data
        self._prefix = prefix

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._data

    def path(self, key: str) -> str:
        """The field's full name as errors report it (``content.extra``)."""
        return self._prefix + key

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        """(True, value) when the key holds a non-nil value; (False, default) when absent or nil."""
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                raise FieldError(self._prefix + key, "missing")
            return False, default
        return True, value

    def text(
        self,
        key: str,
        *,
        min_len: int = 0,
        max_len: int = 1024,
        printable: bool = False,
        default: Any = _MISSING,
    ) -> Any:
        """A text field; ``printable`` refuses non-printable characters (``str.isprintable``).

        The empty string is printable: refuse it with ``min_len=1``.
        """
        # Inlined rather than through _get: these two getters run for every field of every request.
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                raise FieldError(self._prefix + key, "missing")
            return default
        if not isinstance(value, str):
            raise FieldError(self._prefix + key, "must be a string")
        if not min_len <= len(value) <= max_len:
            raise FieldError(self._prefix + key, f"length must be {min_len}..{max_len}")
        if printable and not value.isprintable():
            raise FieldError(self._prefix + key, "must be printable")
        return value

    def integer(
        self, key: str, *, lo: int = _INT64_MIN, hi: int = _INT64_MAX, default: Any = _MISSING
    ) -> Any:
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                raise FieldError(self._prefix + key, "missing")
            return default
        # Exactly int: bool is an int subclass in Python, but on the wire they are distinct types.
        if value.__class__ is not int:
            raise FieldError(self._prefix + key, "must be an integer")
        if not lo <= value <= hi:
            raise FieldError(self._prefix + key, f"must be in {lo}..{hi}")
        return value

    def boolean(self, key: str, *, default: Any = _MISSING) -> Any:
        present, value = self._get(key, default)
        if present and not isinstance(value, bool):
            raise FieldError(self._prefix + key, "must be a boolean")
        return value

    def binary(self, key: str, *, min_len: int = 0, max_len: int = 1 << 20, default: Any = _MISSING) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, bytes):
            raise FieldError(self._prefix + key, "must be binary")
        if not min_len <= len(value) <= max_len:
            raise FieldError(self._prefix + key, f"length must be {min_len}..{max_len}")
        return value

    def mapping(self, key: str, *, default: Any = _MISSING) -> Fields:
        present, value = self._get(key, default)
        if not present:
            return Fields(value if isinstance(value, dict) else {}, f"{self._prefix}{key}.")
        if not isinstance(value, dict):
            raise FieldError(self._prefix + key, "must be a map")
        return Fields(value, f"{self._prefix}{key}.")

    def array(self, key: str, *, max_len: int = 1000, default: Any = _MISSING) -> list[Any]:
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, list):
            raise FieldError(self._prefix + key, "must be an array")
        if len(value) > max_len:
            raise FieldError(self._prefix + key, f"at most {max_len} items")
        return value

    def identifier(self, key: str, *, default: Any = _MISSING) -> Any:
        """An id field (user, group, conversation target): the rule of ``protocol.codes.valid_id``."""
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                raise FieldError(self._prefix + key, "missing")
            return default
        if not valid_id(value):
            raise FieldError(
                self._prefix + key, f"must be an id: 1..{MAX_ID_LEN} printable characters, no outer spaces"
            )
        return value

    def identifier_list(self, key: str, *, max_items: int = 1000, default: Any = _MISSING) -> list[str]:
        """An array of ids, each by the rule of ``protocol.codes.valid_id``."""
        items = self.array(key, max_len=max_items, default=default)
        if key not in self._data or self._data[key] is None:
            return items  # the default, as given
        for item in items:
            if not valid_id(item):
                raise FieldError(self._prefix + key, f"items must be ids of 1..{MAX_ID_LEN} printable characters")
        return items

    def text_list(
        self, key: str, *, max_items: int = 1000, max_len: int = MAX_ID_LEN, default: Any = _MISSING
    ) -> list[str]:
        """An array of printable strings (user ids and the like)."""
        items = self.array(key, max_len=max_items, default=default)
        if key not in self._data or self._data[key] is None:
            return items  # the default, as given
        for item in items:
            if not isinstance(item, str) or not 1 <= len(item) <= max_len or not item.isprintable():
                raise FieldError(self._prefix + key, f"items must be printable strings of 1..{max_len}")
        return items
