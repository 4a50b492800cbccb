"""A client process for the shared rate limit tests: ``python _ratelimit_child.py
JSON`` makes ``calls`` status calls with ``workers`` tasks through one
``RedisRateLimit`` (or, with ``"local": true``, the in-process ``RateLimit``: what
each process would do without Redis), then prints ``done``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from dokobit_async import DokobitClient, RateLimit
from dokobit_async.redis import RedisRateLimit


async def main(settings: dict[str, Any]) -> None:
    limit_args = {k: settings[k] for k in ("calls", "period", "burst")}
    limit: RateLimit
    if settings.get("local"):
        limit = RateLimit(**limit_args)
    else:
        limit = RedisRateLimit(
            str(settings["redis"]),
            lease=float(settings["lease"]),
            **limit_args,
        )
    pending = list(range(int(settings["n"])))
    async with DokobitClient(
        str(settings["token"]), base_url=str(settings["base"]), rate_limit=limit
    ) as client:

        async def worker() -> None:
            while pending:
                pending.pop()
                await client.external.status("SIG")

        await asyncio.gather(*(worker() for _ in range(int(settings["workers"]))))
    if isinstance(limit, RedisRateLimit):
        await limit.aclose()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
