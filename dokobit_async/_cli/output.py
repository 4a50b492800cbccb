"""Terminal output of the ``dokobit-async`` command: printed lines, tables and JSON,
the one-line error, the progress bar, file names and atomic saving of downloads.

What a server or a sender wrote may reach stdout (a signer's name, a postback's
action), so every printed line is made safe for a terminal first. The progress bar
draws on stderr only when stderr is a terminal (or when ``--progress`` forces it: then
one line per redraw, at most once a second), so pipes, logs and CI output stay clean.

The exit statuses live here too, so that every command module raises
:class:`CliError` with the same codes.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from .._payload import write_chunks
from .._redact import printable, unshowable

__all__ = [
    "EXIT_FAILED",
    "EXIT_REFUSED",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "Progress",
    "cannot_listen",
    "default_name",
    "dump",
    "human_size",
    "out",
    "safe_filename",
    "save",
    "shown_path",
    "table",
    "warn",
]

PROG = "dokobit-async"
"""The command's name: the start of its usage and of each line it writes on stderr."""

EXIT_FAILED = 1
"""Exit status of a failure that is neither bad input nor the API's: a local file, a
busy port, an inbox, a cancelled confirmation."""
EXIT_USAGE = 2
"""Exit status of bad input: the command line, a local file or option that cannot be
sent; nothing reached the API."""
EXIT_REFUSED = 3
"""Exit status when the API answered with an error (4xx, 5xx, a redirect)."""
EXIT_TRANSPORT = 4
"""Exit status when no usable answer came: no connection, a timeout, a lost answer
(the outcome of a write is then unknown), or an answer that is not the API's JSON."""

_BAR_WIDTH = 24
_LABEL_WIDTH = 32
_EXTENSIONS = {
    "application/pdf": "pdf",
    "application/vnd.etsi.asic-e+zip": "asice",
    "application/vnd.etsi.asic-s+zip": "asics",
    "application/vnd.lt.archyvai.adoc-2008": "adoc",
    "application/zip": "zip",
    "application/xml": "xml",
    "text/xml": "xml",
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")
# 255 bytes is the name limit of ext4, XFS, btrfs and APFS; the atomic write first
# creates ".NAME.<12 hex>.part" beside the file, 19 bytes longer than NAME.
_NAME_MAX = 255 - len("..123456789abc.part")
# device names that Windows opens instead of a file, whatever the extension
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)(\..*)?")
_PATH_SHOWN = 4096  # printable's limit for a path: all of any real path
_OUT_LINE_LIMIT = 64 * 1024  # characters of one printed line


class CliError(Exception):
    """An error the command reports as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def cannot_listen(host: str, port: int, exc: OSError) -> CliError:
    """The error of a server of ours that cannot bind ``host:port`` (in use, say)."""
    return CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def out(text: str = "") -> None:
    """Print ``text`` on stdout, each line made safe for a terminal: what a server or a
    sender wrote (a signer's name, a postback's action) may hold controls or bidi."""
    lines = (printable(line, _OUT_LINE_LIMIT, backslashes=False) for line in text.split("\n"))
    print("\n".join(lines), file=sys.stdout, flush=True)


def warn(text: str) -> None:
    """Print one ``dokobit-async: warning: ...`` line on stderr."""
    with contextlib.suppress(OSError, ValueError):
        line = printable(text, _OUT_LINE_LIMIT, backslashes=False)
        print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def dump(raw: Mapping[str, Any]) -> str:
    """An API answer's ``raw`` mapping as indented JSON (``--json``)."""

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, (tuple, set, frozenset)):
            return list(value)
        return str(value)

    return json.dumps(raw, indent=2, ensure_ascii=False, default=plain)


def table(rows: list[list[str]]) -> list[str]:
    """``rows`` (the first one the header) as lines of aligned columns, indented by two
    spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or replaced streams
        return False


class Progress:
    """A one-line progress bar redrawn in place with ``\\r`` on a terminal.

    ``update(done, total)`` may be called as often as bytes move: it redraws at most
    every ``interval`` seconds, plus the final state. When the stream is not a
    terminal nothing is ever written, unless ``force``: then each redraw is a line of
    its own, at most one a second (a log keeps a readable trail).
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        force: bool = False,
    ):
        self.stream = sys.stderr if stream is None else stream
        self._terminal = _isatty(self.stream)
        self.enabled = self._terminal or force
        if not self._terminal:
            interval = max(interval, 1.0)
        label = printable(label, _PATH_SHOWN)
        if len(label) > _LABEL_WIDTH:
            label = label[: _LABEL_WIDTH - 1] + "…"
        self.label = label
        self.interval = interval
        self._clock = clock
        self._last_draw: float | None = None
        self._last_state: tuple[int, int | None] | None = None
        self._width = 0

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress; redraw if the last redraw is old enough or it is done."""
        if not self.enabled:
            return
        now = self._clock()
        finished = total is not None and done >= total
        recent = self._last_draw is not None and now - self._last_draw < self.interval
        if recent and not finished:
            self._last_state = (done, total)
            return
        self._draw(done, total)
        self._last_draw = now

    def _draw(self, done: int, total: int | None) -> None:
        self._last_state = None
        if total:
            share = min(max(done / total, 0.0), 1.0)
            filled = int(share * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            text = f"{self.label} [{bar}] {share:4.0%} {human_size(done)}/{human_size(total)}"
        else:
            text = f"{self.label} {human_size(done)}"
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(f"\r{text}{padding}" if self._terminal else f"{text}\n")
            self.stream.flush()

    def close(self) -> None:
        """Draw the last state if a redraw was skipped, and end the line."""
        if not self.enabled or self._last_draw is None:
            return
        if self._last_state is not None:
            self._draw(*self._last_state)
        self._last_draw = None
        if not self._terminal:
            return
        with contextlib.suppress(OSError, ValueError):
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _unshowable(text: str) -> bool:
    # what printable() would escape: a name holding one would not show as what it is
    return any(unshowable(char) for char in text)


def _fits(name: str) -> bool:
    return len(name.encode("utf-8")) <= _NAME_MAX


def safe_filename(name: str | None) -> str | None:
    """A server-suggested file name as a plain name in the current directory, or
    ``None`` when it cannot be used as it is.

    A path keeps only its last part. The name is refused when it holds a control,
    bidi or other format character or a line separator (it would not show as what it
    is), when it is hidden or ``.``/``..``, when it is ``-`` or starts with ``-``
    (stdout, or an option to the next command), when it is a Windows device name, or
    when it is too long to write (255 bytes in UTF-8, less the temporary name's
    suffix).
    """
    if not name or _unshowable(name):
        return None
    name = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not name or name.startswith((".", "-")) or name.strip("_") == "":
        return None
    if _RESERVED.fullmatch(name) or not _fits(name):
        return None
    return name


def _fallback(stem: str, ext: str) -> str:
    """``{stem}.{ext}`` made safe: unusable characters become ``_``, a leading dot or
    dash goes, and the stem is cut to fit."""
    plain = "".join("_" if unshowable(c) else c for c in stem)
    plain = _UNSAFE.sub("_", plain).strip().lstrip(".-") or "download"
    suffix = f".{ext}"
    room = _NAME_MAX - len(suffix.encode("utf-8"))
    return plain.encode("utf-8")[:room].decode("utf-8", "ignore") + suffix


def default_name(
    suggested: str | None, content_type: str | None, stem: str, *, fallback_ext: str = "bin"
) -> str:
    """Where a download goes when no ``-o`` is given: the server's file name if it is
    safe (see :func:`safe_filename`) and free, else ``{stem}.{ext}`` (the extension
    from the content type). Never ``-``: stdout takes an explicit ``-o -``.

    The server's name of an unsigned PDF is the uploaded file's own name, so taking
    the second choice when the first exists keeps the original from being replaced.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    ext = _EXTENSIONS.get(mime) or (mimetypes.guess_extension(mime) or "").lstrip(".")
    fallback = _fallback(stem, ext or fallback_ext)
    name = safe_filename(suggested)
    if name is not None and not Path(name).exists():
        return name
    return fallback


def shown_path(path: str) -> str:
    """A path as the command prints it: control and bidi characters escaped."""
    return printable(path, _PATH_SHOWN)


async def save(
    chunks: AsyncIterable[bytes],
    dest: str,
    *,
    total: int | None,
    label: str,
    overwrite: bool,
    progress: bool = False,
) -> int:
    """Write ``chunks`` to ``dest`` (``-`` is stdout) with a progress bar (forced on a
    stderr that is no terminal with ``progress``); returns the number of bytes. A file
    is written to a temporary name and renamed at the end, so a failed download leaves
    nothing behind. Without ``overwrite`` an existing file is an error."""
    with Progress(label, force=progress) as bar:
        counter = _Counter(bar, total)
        if dest == "-":
            if _isatty(sys.stdout):
                raise CliError(
                    "not writing a binary file to a terminal; redirect stdout", EXIT_USAGE
                )
            await write_chunks(counter.count(chunks), sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            # the library writes the file atomically (temporary file, then rename)
            await write_chunks(counter.count(chunks), _check_dest(dest, overwrite=overwrite))
        return counter.done


def _check_dest(dest: str, *, overwrite: bool) -> Path:
    path = Path(dest)
    if path.is_dir():
        raise CliError(
            f"{shown_path(dest)} is a directory; pass -o with a file name", code=EXIT_USAGE
        )
    if not overwrite and path.exists():
        raise CliError(f"{shown_path(dest)} already exists; pass -o FILE to choose where to write")
    return path


class _Counter:
    """Counts the bytes passing through and keeps the progress bar up to date."""

    def __init__(self, progress: Progress, total: int | None):
        self.progress = progress
        self.total = total
        self.done = 0

    async def count(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        self.progress.update(0, self.total)
        async for chunk in chunks:
            yield chunk
            self.done += len(chunk)
            self.progress.update(self.done, self.total)
        self.progress.update(self.done, self.done if self.total is None else self.total)
