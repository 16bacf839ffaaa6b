"""Message search through the admin API over real HTTP and the ``ember admin search`` command, the index's
rebuild and the backfill of an upgrade (v13's tables, v14's PostgreSQL index; issue 26), on a real gateway and
either backend."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from client import Conversation
from gateway.cli import main
from gateway.clock import Clock, ManualClock
from protocol.codes import ConversationType, ErrorCode
from storage import schema
from tests import backends
from tests.harness import Gateway, sdk, start_gateway
from tests.storage_helpers import peek
from tests.test_admin_messages import Admin


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    # The wall clock's time: ``ember admin`` signs with it, and the API checks the signature's age.
    gw = await start_gateway(nursery, tmp_path / "data", clock=ManualClock(Clock().now_ms()))
    for user in ("ann", "bob", "cat"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


async def fill(gw: Gateway) -> None:
    assert (await gw.services.groups.create("ann", "g", {}, ["bob"]))[0] == 0
    async with sdk(gw, "ann") as ann, sdk(gw, "cat") as cat:
        for text in ("明天开会 agenda", "Agenda v2", "lunch"):
            await ann.messages.send(Conversation(ConversationType.PRIVATE, "bob"), {"type": 1, "searchable_content": text})
        await ann.messages.send(Conversation(ConversationType.GROUP, "g"), {"type": 1, "searchable_content": "group agenda"})
        await cat.messages.send(Conversation(ConversationType.PRIVATE, "ann"), {"type": 1, "searchable_content": "cat's AGENDA"})


def found(answer: dict[str, Any]) -> list[tuple[str, str]]:
    assert answer["code"] == 0, answer
    return [(r["from_user"], r["searchable_content"]) for r in answer["result"]["results"]]


async def test_admin_searches_everyone_or_one_user_over_http(gw: Gateway, admin: Admin) -> None:
    await fill(gw)
    everyone = await admin.call("message/search", {"keyword": "agenda"})
    assert found(everyone) == [
        ("cat", "cat's AGENDA"), ("ann", "group agenda"), ("ann", "Agenda v2"), ("ann", "明天开会 agenda"),
    ]  # fmt: skip
    first = everyone["result"]["results"][0]
    assert first["highlights"] == [[6, 12]] and first["content_type"] == 1 and first["conv"]["target"] == "ann"
    assert everyone["result"]["next_cursor"] is None
    bob = await admin.call("message/search_user", {"user_id": "bob", "keyword": "agenda"})
    assert found(bob) == [("ann", "group agenda"), ("ann", "Agenda v2"), ("ann", "明天开会 agenda")]
    cat = await admin.call("message/search_user", {"user_id": "cat", "keyword": "agenda"})
    assert found(cat) == [("cat", "cat's AGENDA")]
    # The per-user variant answers what that user's own search_messages answers.
    async with sdk(gw, "bob") as c:
        page = await c.messages.search("agenda")
        assert [h.message.content["searchable_content"] for h in page.hits] == [text for _, text in found(bob)]
    paged = await admin.call("message/search", {"keyword": "agenda", "limit": 2})
    assert paged["result"]["next_cursor"] is not None
    rest = await admin.call("message/search", {"keyword": "agenda", "limit": 2, "cursor": paged["result"]["next_cursor"]})
    assert found(paged) + found(rest) == found(everyone)
    group_only = await admin.call("message/search", {"keyword": "明天", "conv": {"type": 1, "target": "g"}})
    assert found(group_only) == []
    assert found(await admin.call("message/search", {"keyword": "明天"})) == [("ann", "明天开会 agenda")]


async def test_admin_bad_searches_are_251_with_the_field(gw: Gateway, admin: Admin) -> None:
    cases = [
        ({"keyword": ""}, "keyword: must not be empty"),
        ({"keyword": "x", "limit": 0}, "limit: must be in 1..100"),
        ({"keyword": "x", "cursor": "nope"}, "cursor: not a cursor this server gave (next_cursor of a page)"),
        ({"keyword": "x", "conv": {"type": 0, "target": "bob"}}, "conv.type: a private conversation needs user_id (it has two sides)"),
    ]  # fmt: skip
    for payload, msg in cases:
        assert await admin.call("message/search", payload) == {"code": ErrorCode.INVALID_PARAMETER, "msg": msg, "result": None}
    answer = await admin.call("message/search_user", {"keyword": "x"})  # the model: user_id is required
    assert answer["code"] == ErrorCode.INVALID_PARAMETER and "user_id" in answer["msg"]


async def test_rebuild_gives_the_same_answers(gw: Gateway, admin: Admin) -> None:
    await fill(gw)
    queries = ["agenda", "明天", "开", "lunch", "v2"]
    before = [found(await admin.call("message/search", {"keyword": q})) for q in queries]
    assert all(before[:2]) and before[2] == before[1]

    def wipe(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM message_search")
        conn.execute("DELETE FROM search_recent")

    await gw.services.store.run(wipe)
    assert found(await admin.call("message/search", {"keyword": "agenda"})) == []
    assert (await admin.call("message/search_rebuild", {})) == {"code": 0, "msg": "success", "result": {"indexed": 5}}
    assert [found(await admin.call("message/search", {"keyword": q})) for q in queries] == before


async def ember(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


async def test_ember_admin_search_command(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    await fill(gw)
    base = ["admin", "--url", gw.running.admin_url, "--secret", gw.config.admin.secret]
    capsys.readouterr()
    assert await ember(*base, "search", "agenda", "--user", "cat") == 0
    results = json.loads(capsys.readouterr().out)["result"]["results"]
    assert [r["searchable_content"] for r in results] == ["cat's AGENDA"]
    assert await ember(*base, "search", "明天", "--limit", "1") == 0
    assert [r["searchable_content"] for r in json.loads(capsys.readouterr().out)["result"]["results"]] == ["明天开会 agenda"]
    assert await ember(*base, "search", "--rebuild") == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"indexed": 5}
    assert await ember(*base, "search", "") == 1  # 251 on stderr
    assert "keyword: must not be empty" in capsys.readouterr().err
    assert await ember(*base, "search") == 2


def _roll_back(gw: Gateway, migration: Callable[..., None]) -> None:
    """Put the (stopped) gateway's database back to the schema before ``migration`` (v13, v14 or v15), rows kept:
    what a database of an older Ember looks like."""
    version = schema.MIGRATIONS.index(migration)
    url = backends.known_url(gw.config.storage.path)
    if url:
        from storage.postgres.connection import connect

        with connect(url, autocommit=True) as pconn:
            if migration is schema._v13_message_search:  # its tables go, and the later indexes with them
                pconn.execute("DROP TABLE message_search")
                pconn.execute("DROP TABLE search_recent")
                pconn.execute("DROP INDEX inbox_by_message")
            else:  # v15's column goes, and its index with it
                pconn.execute("ALTER TABLE message_search DROP COLUMN lexemes")
                if migration is schema._v15_search_lexemes:  # back to v14's index on the expression
                    from storage.search_pg import V14_INDEX

                    pconn.execute(V14_INDEX)
            pconn.execute("UPDATE schema_version SET version = %s", (version,))
        return
    conn = sqlite3.connect(gw.config.storage.path, isolation_level=None)
    if migration is schema._v13_message_search:
        conn.execute("DROP TABLE message_search")
        conn.execute("DROP TABLE search_recent")
        conn.execute("DROP INDEX inbox_by_message")
    conn.execute(f"PRAGMA user_version = {version}")  # v14 and v15 have nothing on SQLite: the version only
    conn.close()


@pytest.mark.parametrize(
    "migration",
    [schema._v13_message_search, schema._v14_search_index, schema._v15_search_lexemes],
    ids=["v13", "v14", "v15"],
)
async def test_an_upgrade_indexes_the_messages_already_stored(
    nursery: trio.Nursery, tmp_path, migration: Callable[..., None]
) -> None:
    data = tmp_path / "data"
    async with trio.open_nursery() as first:
        gw = await start_gateway(first, data)
        for user in ("ann", "bob"):
            await gw.user(user)
        async with sdk(gw, "ann") as ann:
            await ann.messages.send(Conversation(ConversationType.PRIVATE, "bob"), {"type": 1, "searchable_content": "旧消息 old news"})
        first.cancel_scope.cancel()
    _roll_back(gw, migration)
    gw = await start_gateway(nursery, data)
    async with sdk(gw, "bob") as bob:
        page = await bob.messages.search("消息 NEWS")
        assert [h.message.content["searchable_content"] for h in page.hits] == ["旧消息 old news"]
        assert page.hits[0].highlights == ((1, 3), (8, 12))
    if backends.on_postgres():  # the GIN index on the stored vector was built, from the rows there
        indexes = peek(gw.config.storage.path, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'message_search'")
        assert any(name == "message_search_lexemes" and d.endswith("USING gin (lexemes)") for name, d in indexes), indexes
