"""Where the command's access token comes from, and the client made with it.

The token travels in the query string of every call and opens the whole account, so
the command takes it from the environment (``DOKOBIT_ACCESS_TOKEN``) or from a file
(``--token-file PATH``, one line); ``--token VALUE`` still works for the API's
commands but warns, since every user of the machine sees a process's arguments
(``ps``). Every spelling of the token that may reach an output is collected first
(:func:`secrets_in`, :func:`read_token_file`), so that each error line and log line
is masked with it (``_redact.redact``).

The client's rate limit is the token's: ``RateLimit``'s defaults, in this process,
unless ``--rate-limit URL`` (or ``$DOKOBIT_RATE_LIMIT``) names a Redis, where it is a
:class:`~dokobit_async.redis.RedisRateLimit` that every process of the deployment
with the same token and the same Redis shares: a command's calls then count in the
application's budget (docs/architecture.md#the-rate-limit-across-processes). Its
``calls`` and ``period`` must be the application's (``--rate-limit-calls``,
``--rate-limit-period``): the shared keys are read with each process's own. The
Redis is asked once at start (:func:`in_use`): one it cannot reach is one error line,
exit 1, before any call; its URL's password is never shown (``_urls.server_address``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from .._bodies import JSON
from .._urls import server_address
from ..client import PRODUCTION_URL, DokobitClient
from ..exceptions import InvalidArgumentError
from ..ratelimit import RateLimit
from .arguments import positive_seconds, whole_number
from .inboxes import REDIS_SCHEMES, redis_extra
from .output import EXIT_USAGE, CliError, shown_path, warn

if TYPE_CHECKING:
    from ..redis import RedisRateLimit

__all__ = [
    "BASE_URL_ENV",
    "RATE_LIMIT_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_LIMIT",
    "add_rate_limit_options",
    "client_of",
    "in_use",
    "limit_shown",
    "rate_limit_of",
    "read_token_file",
    "secrets_in",
]

TOKEN_ENV = "DOKOBIT_ACCESS_TOKEN"  # noqa: S105 - the variable's name
BASE_URL_ENV = "DOKOBIT_BASE_URL"
RATE_LIMIT_ENV = "DOKOBIT_RATE_LIMIT"
_LIMIT = RateLimit()  # the application's defaults: a shared limit must use the same
TOKEN_FILE_LIMIT = 4096
"""Largest ``--token-file`` read, in bytes: a token is one short line."""
# and a postback secret misplaced on the command line (``listen`` takes none there)
_TOKENISH = re.compile(r"^--?((access[-_]?)?tok|[\w-]*secret)", re.IGNORECASE)


def secrets_in(argv: Sequence[str]) -> list[str]:
    """Every token value that may show up: the variable and any ``--token`` given."""
    found = [os.environ.get(TOKEN_ENV, "")]
    for index, arg in enumerate(argv):
        # also typos such as --tok or --access-token, which argparse would echo back
        name, eq, value = arg.partition("=")
        if not _TOKENISH.search(name) or name.lower().endswith(("-file", "-env")):
            continue
        if eq:
            found.append(value)
        elif index + 1 < len(argv):
            found.append(argv[index + 1])
    return sorted({v for s in found for v in (s, s.strip()) if v.strip()})


def read_token_file(path: str) -> str:
    """The token in ``path``: its one line, stripped.

    Raises:
        CliError: (exit 2) the file cannot be read, is empty, holds more than one
            line or is larger than :data:`TOKEN_FILE_LIMIT`. The message names the
            file, never its content.
    """
    where = shown_path(path)
    try:
        with Path(path).open("rb") as file:
            data = file.read(TOKEN_FILE_LIMIT + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(f"cannot read --token-file {where}: {reason}", EXIT_USAGE) from None
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        lines = []
    if len(data) > TOKEN_FILE_LIMIT or len(lines) != 1:
        raise CliError(f"--token-file {where} must hold the access token on one line", EXIT_USAGE)
    return lines[0]


def _token(args: argparse.Namespace) -> tuple[str, bool]:
    """The token, and whether it came from ``--token``."""
    given = getattr(args, "token", None)
    from_file = getattr(args, "token_from_file", None)
    if given is not None and from_file is not None:
        raise CliError("give the access token once: --token-file or --token", EXIT_USAGE)
    if from_file is not None:
        return str(from_file), False
    if given is not None and given.strip():
        return str(given), True
    return os.environ.get(TOKEN_ENV, ""), False


def client_of(
    args: argparse.Namespace, *, required: bool, warn_argument: bool = False
) -> DokobitClient | None:
    """The client of the token and address in ``args`` or the environment; ``None``
    when there is no token and it is not ``required``. A ``--token`` warns on stderr
    when ``warn_argument``."""
    token, from_argument = _token(args)
    token = token.strip()
    if not token:
        if not required:
            return None
        raise CliError(
            f"no access token: set {TOKEN_ENV} or pass --token-file PATH", code=EXIT_USAGE
        )
    base_url = getattr(args, "base_url", None) or os.environ.get(BASE_URL_ENV) or PRODUCTION_URL
    encoding = JSON if getattr(args, "json_body", False) else "form"
    limit = rate_limit_of(args)
    try:
        client = DokobitClient(token, base_url=base_url, body_encoding=encoding, rate_limit=limit)
    except InvalidArgumentError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    if from_argument and warn_argument:
        warn(
            "--token is visible to every user of this machine (ps); "
            f"set {TOKEN_ENV} or use --token-file PATH"
        )
    return client


def add_rate_limit_options(p: argparse.ArgumentParser) -> None:
    """``--rate-limit URL``, ``--rate-limit-calls N`` and ``--rate-limit-period S``:
    the token's limit, this process's own or shared through Redis (every command that
    calls the API; ``SUPPRESS`` defaults, as ``cli._common_options``)."""
    p.add_argument(
        "--rate-limit",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="share the token's rate limit with the application's processes through "
        "this Redis: redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... or "
        f"unix:///PATH (default: ${RATE_LIMIT_ENV}, better for a password: ps shows "
        "arguments; without either, this process keeps a limit of its own that no "
        "other process counts)",
    )
    p.add_argument(
        "--rate-limit-calls",
        type=whole_number(1),
        metavar="N",
        default=argparse.SUPPRESS,
        help=f"the token's calls per period (default: {_LIMIT.calls}, the library's); "
        "with --rate-limit, the application's: every process that shares the Redis "
        "must give the same calls and period (each reads the shared count with its own)",
    )
    p.add_argument(
        "--rate-limit-period",
        type=positive_seconds,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help=f"the period of --rate-limit-calls (default: {_LIMIT.period:g}, the library's)",
    )


def rate_limit_of(args: argparse.Namespace) -> RateLimit:
    """The token's limit: a ``RedisRateLimit`` on ``--rate-limit`` (or
    ``$DOKOBIT_RATE_LIMIT``; ``--rate-limit ''`` turns the variable off), else this
    process's own; ``calls`` and ``period`` from the options or ``RateLimit``'s."""
    calls = getattr(args, "rate_limit_calls", _LIMIT.calls)
    period = getattr(args, "rate_limit_period", _LIMIT.period)
    url = getattr(args, "rate_limit", None)
    if url is None:
        url = os.environ.get(RATE_LIMIT_ENV, "")
    if not url.strip():
        return RateLimit(calls=calls, period=period)
    shown = _redis_url(url)
    limit: RateLimit = redis_extra(f"--rate-limit {shown}").RedisRateLimit(
        url, calls=calls, period=period
    )
    return limit


def _redis_url(text: str) -> str:
    """A checked Redis URL as messages show it (a usage error when it is none)."""
    parts = urlsplit(text)
    if "://" not in text or parts.scheme not in REDIS_SCHEMES:
        raise CliError(
            "--rate-limit takes a Redis URL: redis://[:PASSWORD@]HOST[:PORT][/DB], "
            "rediss://... or unix:///PATH",
            code=EXIT_USAGE,
        )
    try:
        parts.port  # noqa: B018 - checked: a port that is not a number raises
    except ValueError:
        raise CliError("--rate-limit: the Redis URL's port is not a number", EXIT_USAGE) from None
    if parts.scheme != "unix" and not parts.hostname:
        raise CliError(f"--rate-limit: a {parts.scheme}:// URL needs a host", EXIT_USAGE)
    return server_address(text)


def _shared(limit: RateLimit | None) -> RedisRateLimit | None:
    """``limit`` if it is a ``RedisRateLimit`` (only a Redis URL imports the extra)."""
    extra = sys.modules.get("dokobit_async.redis")
    if extra is not None and isinstance(limit, extra.RedisRateLimit):
        return cast("RedisRateLimit", limit)
    return None


def limit_shown(limit: RateLimit | None) -> str:
    """``limit`` as a line shows it: its calls, period and Redis (no password)."""
    if limit is None:
        return "no rate limit"
    shared = _shared(limit)
    where = f"shared through {server_address(str(shared.redis))}" if shared else "this process's"
    return f"{limit.calls} calls per {limit.period:g} s, {where}"


@contextlib.asynccontextmanager
async def in_use(client: DokobitClient) -> AsyncIterator[DokobitClient]:
    """``client`` open for the block, then closed; a shared rate limit's Redis is
    asked first (one that does not answer: exit 1, nothing sent) and its connections
    closed last, once the releases of the client's calls reached it."""
    shared = _shared(client.rate_limit)
    if shared is not None:
        await _answers(shared)
    try:
        async with client:
            yield client
    finally:
        if shared is not None:
            await shared.aclose()


async def _answers(limit: RedisRateLimit) -> None:
    import redis.asyncio  # the extra is there: ``limit`` is one of its classes
    import redis.exceptions

    url = str(limit.redis)
    timeout = min(limit.redis_timeout, 5.0)
    client = redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:  # never the URL: its password
        raise CliError(
            f"cannot reach the rate limit's Redis at {server_address(url)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        await client.aclose()
