"""protocol.token: the token string, the sealed credential, expiry."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.token import (
    MAX_TOKEN_LEN,
    PREFIX,
    Credential,
    TokenError,
    TokenParts,
    encode_token,
    issue_token,
    open_credential,
    parse_token,
    seal_credential,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SECRET = b"s" * 32
FAST = settings(max_examples=100, deadline=None)

ids = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=64
).filter(str.isprintable)


def b64(data: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")


@FAST
@given(
    ids,
    ids,
    st.integers(min_value=0, max_value=255),
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=2**62),
    st.integers(min_value=0, max_value=2**62),
)
def test_issue_parse_open_round_trip(
    user: str, client: str, platform: int, secret: bytes, t0: int, t1: int
) -> None:
    token = issue_token(
        KEY,
        user_id=user,
        client_id=client,
        platform=platform,
        secret=secret,
        issued_at_ms=t0,
        expires_at_ms=t1,
    )
    if len(token) > MAX_TOKEN_LEN:  # long non-ASCII ids can exceed the token limit
        with pytest.raises(TokenError):
            parse_token(token)
        return
    parts = parse_token(token)
    assert (parts.user_id, parts.client_id, parts.platform, parts.secret) == (user, client, platform, secret)
    assert open_credential(KEY, parts.credential) == Credential(user, client, platform, t0, t1)
    assert token.startswith("em1.") and "=" not in token


def test_fixed_nonce_makes_the_credential_deterministic_and_fresh_nonces_vary() -> None:
    cred = Credential("u", "c", 1, 10, 0)
    nonce = bytes(12)
    assert seal_credential(KEY, cred, nonce=nonce) == seal_credential(KEY, cred, nonce=nonce)
    assert seal_credential(KEY, cred)[:12] != seal_credential(KEY, cred)[:12]


def test_credential_sealed_by_another_key_is_refused() -> None:
    sealed = seal_credential(OTHER_KEY, Credential("u", "c", 1, 10, 0))
    with pytest.raises(TokenError, match="not sealed"):
        open_credential(KEY, sealed)


def test_tampered_or_short_credential_is_refused() -> None:
    sealed = bytearray(seal_credential(KEY, Credential("u", "c", 1, 10, 0)))
    sealed[0] ^= 1  # the nonce
    with pytest.raises(TokenError):
        open_credential(KEY, bytes(sealed))
    with pytest.raises(TokenError, match="short"):
        open_credential(KEY, b"x" * 27)
    with pytest.raises(TokenError):
        open_credential(KEY, b"")


@pytest.mark.parametrize(
    "plaintext",
    [
        codec.pack(["u", "c", 1, 10]),
        codec.pack(["u", "c", 1, 10, 0, 0]),
        codec.pack(["u", "c", "1", 10, 0]),
        codec.pack(["u", b"c", 1, 10, 0]),
        codec.pack(["u", "c", True, 10, 0]),
        codec.pack({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}),
        codec.pack("abcde"),
        b"\xc1",
    ],
)
def test_credential_of_the_wrong_shape_is_refused_even_when_sealed_by_us(plaintext: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from protocol.token import CREDENTIAL_AAD

    nonce = bytes(12)
    sealed = nonce + AESGCM(KEY).encrypt(nonce, plaintext, CREDENTIAL_AAD)
    with pytest.raises(TokenError, match="malformed"):
        open_credential(KEY, sealed)


def test_expired() -> None:
    assert not Credential("u", "c", 1, 0, 0).expired(2**62)  # 0: never
    cred = Credential("u", "c", 1, 0, 1000)
    assert not cred.expired(999)
    assert cred.expired(1000)  # expired from that instant on
    assert cred.expired(1001)


def good_items() -> list:
    return ["u", "c", 1, SECRET, b"x" * 28]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "em1.",
        "em2." + b64(codec.pack(good_items()))[4:],
        "EM1." + b64(codec.pack(good_items()))[4:],
        b64(codec.pack(good_items()[:4])),
        b64(codec.pack(good_items() + [1])),
        b64(codec.pack({"user_id": "u"})),
        b64(codec.pack(["", "c", 1, SECRET, b"x" * 28])),
        b64(codec.pack(["u", "c\n", 1, SECRET, b"x" * 28])),
        b64(codec.pack(["u", "c", 256, SECRET, b"x" * 28])),
        b64(codec.pack(["u", "c", -1, SECRET, b"x" * 28])),
        b64(codec.pack(["u", "c", 1, SECRET[:31], b"x" * 28])),
        b64(codec.pack(["u", "c", 1, "s" * 32, b"x" * 28])),
        b64(codec.pack(["u", "c", 1, SECRET, b"x" * 27])),
        b64(codec.pack(["u", "c", 1, SECRET, b"x" * 513])),
        b64(codec.pack(good_items())) + "A",  # base64 of a wrong length
        "em1.é",
        "em1." + "A" * MAX_TOKEN_LEN,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        parse_token(token)


def _spellings(token: str) -> list[str]:
    """Other spellings of a valid token that a lenient base64 decoder maps to the same bytes."""
    body = token[len(PREFIX) :]
    last = body[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused_bits = {2: 4, 3: 2}[len(body) % 4]  # the token body below is not a multiple of 4 long
    tweaked = alphabet[alphabet.index(last) | 1] if unused_bits else last
    return [
        PREFIX + body + "==",  # padding
        PREFIX + body + "=",
        PREFIX + body[:8] + "!" + body[8:],  # a character outside the alphabet is skipped by default
        PREFIX + body[:8] + " " + body[8:],
        PREFIX + body[:8] + "\n" + body[8:],
        PREFIX + body.replace("-", "+").replace("_", "/"),  # the standard alphabet's 62 and 63
        PREFIX + body[:-1] + tweaked,  # non-zero unused bits in the last character
    ]


def test_token_has_exactly_one_spelling() -> None:
    token = encode_token(TokenParts("u", "c", 7, SECRET, (b"\xfb\xff\xbe" * 14)[:40]))
    assert len(token[len(PREFIX) :]) % 4 in (2, 3)
    assert "-" in token or "_" in token
    assert parse_token(token).platform == 7
    spellings = _spellings(token)
    assert len(set(spellings)) == len(spellings) and token not in spellings
    for other in spellings:
        with pytest.raises(TokenError):
            parse_token(other)


def test_parse_token_refuses_non_strings() -> None:
    with pytest.raises(TokenError):
        parse_token(b"em1.xxxx")  # type: ignore[arg-type]


def test_encode_token_is_parse_tokens_inverse() -> None:
    parts = TokenParts("u", "c", 7, SECRET, b"x" * 40)
    assert parse_token(encode_token(parts)) == parts


@FAST
@given(st.text(max_size=200))
def test_parse_token_on_arbitrary_text_raises_only_token_error(text: str) -> None:
    for candidate in (text, PREFIX + text):
        try:
            parse_token(candidate)
        except TokenError:
            pass


@FAST
@given(st.binary(max_size=300))
def test_parse_token_on_arbitrary_bodies_raises_only_token_error(body: bytes) -> None:
    try:
        parse_token(b64(body))
    except TokenError:
        pass


@FAST
@given(st.binary(max_size=200))
def test_open_credential_on_arbitrary_bytes_raises_only_token_error(data: bytes) -> None:
    with pytest.raises(TokenError):
        open_credential(KEY, data)
