"""User info for the app: a cache the SDK keeps, since the server never pushes user info (SPEC §6, FAQ 4, 9).

``Client.users`` is a ``Users``. ``get_user_info(ids)`` answers from the cache and asks the server only
for ids it does not hold; ``refresh=True`` asks for all of them, sending the ``updated_at`` it holds
(``known``) so that the server answers only users that changed. When fetched info differs from what
the cache held (or the cache held nothing), one ``UserInfoUpdated`` with every such user goes to
``Client.events()``; a refresh that finds nothing new emits nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .core import Core
from .errors import RequestFailed

#: Ids per get_user_info request (the server's most).
USERS_PER_REQUEST: Final = 100


@dataclass(frozen=True, slots=True)
class UserInfo:
    """One user's info as the server answered it: ``fields`` holds what this user may see of it
    (``name``, ``display_name``, …; ids only with user hosting off)."""

    user_id: str
    updated_at: int
    fields: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True, slots=True)
class UserInfoUpdated:
    """Put on ``Client.events()`` when fetched user info differs from the cache."""

    users: tuple[UserInfo, ...]


class Users:
    def __init__(self, core: Core) -> None:
        self._core = core
        #: user id → UserInfo
        self.cache: dict[str, UserInfo] = {}
        #: get_user_info requests made so far (for tests and metrics)
        self.requests = 0

    async def get_user_info(self, user_ids: Iterable[str], refresh: bool = False) -> list[UserInfo]:
        """The users found among ``user_ids``, in the order asked; see the module docstring.

        Raises:
            RequestFailed: the server refused the request (251 for a malformed id).
        """
        ids = list(dict.fromkeys(user_ids))
        wanted = ids if refresh else [u for u in ids if u not in self.cache]
        updated: list[UserInfo] = []
        for start in range(0, len(wanted), USERS_PER_REQUEST):
            chunk = wanted[start : start + USERS_PER_REQUEST]
            known = {u: self.cache[u].updated_at for u in chunk if u in self.cache}
            params: dict[str, Any] = {"user_ids": chunk, "refresh": refresh}
            if known:
                params["known"] = known
            response = await self._core.request("get_user_info", params)
            self.requests += 1
            if not response.ok:
                raise RequestFailed("get_user_info", response.code, response.result)
            for raw in response.result["users"]:
                info = UserInfo(raw["user_id"], int(raw.get("updated_at", 0)), dict(raw))
                if self.cache.get(info.user_id) != info:
                    updated.append(info)
                self.cache[info.user_id] = info
        if updated:
            self._core.emit(UserInfoUpdated(tuple(updated)))
        return [self.cache[u] for u in ids if u in self.cache]
