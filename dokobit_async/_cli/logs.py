"""The command's logging: one line per record on stderr, secrets masked.

aiohttp's and asyncio's records may span several lines and quote what a sender sent;
each becomes one printable line, cut at :data:`LINE_LIMIT`, with the access token and
any postback secret masked, and a traceback cut to its exception.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

from .._redact import error_text, printable, redact
from .output import PROG

__all__ = ["LINE_LIMIT", "log_to_stderr"]

LINE_LIMIT = 2000
"""Characters of one log or error line."""


class _RedactFilter(logging.Filter):
    """Makes each record one printable line, secrets masked, a traceback cut to its
    exception."""

    def __init__(self, secrets: Sequence[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:  # one line, never a traceback
            exc = record.exc_info[1]
            text += f" ({error_text(exc)})"
            record.exc_info = None
        record.exc_text = record.stack_info = None
        # asyncio's exception handler and aiohttp's parser errors span several lines,
        # and aiohttp's may quote what a sender sent: one line, no control characters
        lines = (line.strip() for line in redact(text, self.secrets).splitlines())
        joined = " ".join(line for line in lines if line)
        # backslashes kept: the library's own lines are printable already
        record.msg = printable(joined, LINE_LIMIT, backslashes=False)
        record.args = None
        return True


@contextlib.contextmanager
def log_to_stderr(
    verbose: bool, secrets: Sequence[str], *, serving: bool = False
) -> Iterator[None]:
    """Send the library's, aiohttp's and asyncio's log records to stderr, one line each.

    Args:
        verbose: ``-v``: from DEBUG up, the server's access log too.
        secrets: values masked in every line (the access token as given).
        serving: a server command (``listen``): the library's records from INFO up
            (each postback), and aiohttp's and asyncio's warnings and errors, even
            without ``-v``.

    Note:
        Without ``verbose`` or ``serving`` nothing is logged: ``main`` reports errors
        in one line, and retries stay quiet. The loggers' levels, handlers and
        propagation are restored on exit.
    """
    handler: logging.Handler = logging.NullHandler()
    if verbose or serving:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
        handler.addFilter(_RedactFilter(secrets))
    quiet = logging.WARNING if serving else logging.CRITICAL
    levels = {
        "dokobit_async": logging.DEBUG if verbose else logging.INFO if serving else quiet,
        "aiohttp": logging.DEBUG if verbose else quiet,  # .access (INFO), .server, .web...
        "asyncio": logging.INFO if verbose else quiet,  # e.g. accept() out of resources
    }
    names = list(levels)
    saved = {}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        saved[name] = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield
    finally:
        for name in names:
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(saved[name][0])
            logger.propagate = saved[name][1]
