"""Which served model scores a stream: the longest matching stream-id prefix, else the
default model. Bounded cache, since stream ids come and go."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Router"]

ROUTE_CACHE_SIZE = 100_000


class Router:
    def __init__(self, default: str, routes: Mapping[str, str]) -> None:
        self.default = default
        self._routes = sorted(routes.items(), key=lambda kv: -len(kv[0]))
        self._cache: dict[bytes | None, str] = {}

    def model_for(self, key: bytes | None) -> str:
        if not self._routes:
            return self.default
        name = self._cache.get(key)
        if name is None:
            sid = key.decode("utf-8", "replace") if key else ""
            name = next((m for prefix, m in self._routes if sid.startswith(prefix)), self.default)
            if len(self._cache) >= ROUTE_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = name
        return name
