"""``dokobit-async inbox list|show|retry|replay|purge|export``: inspect and repair a
listener's inbox.

It works on the inbox of ``listen`` (:mod:`dokobit_async._cli.listen`), an SQLite
file (also while a listener runs on it: WAL) or a Redis inbox
(:mod:`dokobit_async._cli.inboxes`), the same way. ``replay`` sends done events back
to their handlers (``Inbox.replay``); ``export`` writes events as JSON Lines with the
access token (``$DOKOBIT_ACCESS_TOKEN``) and the postback secrets the listener uses
(``$DOKOBIT_POSTBACK_SECRET``, ``INBOX.secret``) masked, besides what the library
always masks (``export_jsonl``).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TextIO, get_args

from .._console_pages import pretty_body
from .._redact import printable, redact, shown_token
from ..inbox import Inbox, InboxState, StoredEvent, export_jsonl
from .arguments import Command, non_negative, whole_number
from .inboxes import InboxLocation, add_inbox_option, inbox_location, opened
from .output import EXIT_USAGE, CliError, out, shown_path, table
from .secrets_source import known_secrets

__all__ = ["add_parser", "inbox", "moment"]

_STATES = list(get_args(InboxState))
_ERROR_WIDTH = 50
_CELL_WIDTH = 40  # a sender-supplied value in a table cell
_LINE_WIDTH = 2000  # a line of `show`


def add_parser(command: Command) -> None:
    """Add ``inbox`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("inbox", "inspect or repair a listener's inbox", uses_api=False)
    actions = p.add_subparsers(dest="inbox_command", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    add_inbox_option(where)

    def action(name: str, helptext: str) -> argparse.ArgumentParser:
        return actions.add_parser(
            name, parents=[where], help=helptext, description=helptext, allow_abbrev=False
        )

    a = action("list", "one line per event, oldest first")
    a.add_argument("--state", choices=_STATES, help="only events in this state")
    a.add_argument(
        "--limit", type=whole_number(0), default=100, help="at most N (default: %(default)s)"
    )
    a = action("show", "one event's details and body")
    a.add_argument("event", metavar="ID", help="the event's seq number, id or id prefix")
    a = action("retry", "send dead or unconfirmed events to the handlers again")
    a.add_argument("event", metavar="ID", nargs="?", help="one event (default: all)")
    a = action("replay", "send done events to their handlers again, counted as a replay")
    a.add_argument("events", metavar="ID", nargs="*", help="events by seq number, id or id prefix")
    _choosing(a)
    a.add_argument(
        "--handler", metavar="NAME", help="only this handler runs again (default: every one)"
    )
    a = action("export", "write events as JSON Lines (no access token, no URL secret)")
    a.add_argument("--format", choices=["jsonl"], default="jsonl", help="(default: %(default)s)")
    a.add_argument("--state", choices=_STATES, help="only events in this state")
    _choosing(a)
    a.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="where to (default: - for stdout)"
    )
    a = action("purge", "delete the events in a state")
    a.add_argument("--state", choices=_STATES, default="done", help="(default: %(default)s)")
    a.add_argument(
        "--older-than",
        type=non_negative,
        metavar="SECONDS",
        default=2 * 24 * 3600,
        help="only events received more than SECONDS ago (default: two days, past "
        "Dokobit's last retry at 24 h, so a purged event cannot come back as new; "
        "0 purges all)",
    )


def _choosing(p: argparse.ArgumentParser) -> None:
    """``--since``, ``--until`` and ``--action``, of ``replay`` and ``export``."""
    p.add_argument(
        "--since",
        type=moment,
        metavar="TIME",
        help="only events received at or after TIME"
        " (ISO 8601, local time without an offset; or unix seconds)",
    )
    p.add_argument("--until", type=moment, metavar="TIME", help="only events received before TIME")
    p.add_argument("--action", help="only events of this action (e.g. signer_signed)")


_UNIX_SECONDS = re.compile(r"\d+(\.\d*)?")


def moment(text: str) -> float:
    """argparse type: a time as unix seconds, or ISO 8601 (``Z`` for UTC; local time
    when it has no offset)."""
    text = text.strip()
    try:
        if _UNIX_SECONDS.fullmatch(text):
            value = float(text)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a time (ISO 8601 or unix seconds): {text!r}")
    return value


@contextmanager
def _output(target: str) -> Iterator[TextIO]:
    """``-o``: stdout for ``-``, else the file (created or truncated)."""
    if target == "-":
        yield sys.stdout
        return
    try:
        file = open(target, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CliError(f"cannot write {shown_path(target)}: {why}", EXIT_USAGE) from None
    with file:
        yield file


# ------------------------------------------------------------------ inbox


async def inbox(args: argparse.Namespace) -> int:
    """``inbox list|show|retry|purge`` on an existing inbox."""
    where = inbox_location(args.inbox)
    async with opened(where, existing=True) as box:
        if args.inbox_command == "list":
            events = await box.list(state=args.state, limit=args.limit)
            if not events:
                out("no events" + (f" in state {args.state}" if args.state else ""))
                return 0
            header = ["SEQ", "ID", "STATE", "ACTION", "TOKEN", "TRIES", "RECEIVED", "LAST ERROR"]
            secrets = known_secrets(where)  # (masked before a cell is cut)
            rows = [header] + [_row(event, secrets) for event in events]
            out("\n".join(line[2:] for line in table(rows)))
        elif args.inbox_command == "show":
            shown = "\n".join(_describe(await _find(box, where, args.event)))
            out(redact(shown, known_secrets(where)))  # the token, every postback secret
        elif args.inbox_command == "replay":
            await _replay(box, where, args)
        elif args.inbox_command == "export":
            with _output(args.output) as sink:
                count = await export_jsonl(
                    box,
                    sink,
                    state=args.state,
                    received_after=args.since,
                    received_before=args.until,
                    action=args.action,
                    secrets=known_secrets(where),
                )
            print(f"{count} event{'' if count == 1 else 's'} exported", file=sys.stderr)
        elif args.inbox_command == "retry":
            event_id = None if args.event is None else (await _find(box, where, args.event)).id
            moved = await box.retry(event_id)
            out(f"{moved} event{'' if moved == 1 else 's'} back to pending")
        else:
            older = None if not args.older_than else time.time() - args.older_than
            gone = await box.purge(state=args.state, older_than=older)
            out(f"{gone} {args.state} event{'' if gone == 1 else 's'} purged")
    return 0


async def _replay(box: Inbox, where: InboxLocation, args: argparse.Namespace) -> None:
    """``inbox replay``: the events named (by seq, id or prefix) and/or chosen."""
    if not args.events and args.since is None and args.until is None and args.action is None:
        raise CliError(
            "inbox replay needs IDs, --since, --until or --action (--since 0 replays "
            "every done event)",
            code=EXIT_USAGE,
        )
    ids = [(await _find(box, where, ref)).id for ref in args.events]
    moved = await box.replay(
        ids,
        received_after=args.since,
        received_before=args.until,
        action=args.action,
        handler=args.handler,
    )
    to = f"handler {printable(args.handler)} only" if args.handler else "every handler"
    out(f"{moved} event{'' if moved == 1 else 's'} replayed ({to})")


async def _find(box: Inbox, where: InboxLocation, ref: str) -> StoredEvent:
    """An event by id, seq number or unique id prefix."""
    event = await box.get(ref)
    if event is not None:
        return event
    total = sum((await box.counts()).values())
    events = await box.list(limit=total)
    if ref.isdigit():
        matches = [e for e in events if e.seq == int(ref)]
    else:
        matches = [e for e in events if e.id.startswith(ref.lower())] if ref else []
    if len(matches) > 1:
        raise CliError(f"event id prefix {ref!r} is ambiguous; give more of it", code=2)
    if not matches:
        raise CliError(f"no event {ref!r} in {where.shown}")
    return matches[0]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _short_error(error: str | None, secrets: list[str]) -> str:
    if not error:
        return "-"
    # stored errors are printable already (the dispatcher keeps them so), and masked
    # by the process that stored them: masked here too, for a secret it did not know
    return printable(" ".join(redact(error, secrets).split()), _ERROR_WIDTH, backslashes=False)


def _row(event: StoredEvent, secrets: list[str]) -> list[str]:
    received = datetime.fromtimestamp(event.received_at).strftime("%m-%d %H:%M:%S")
    return [
        str(event.seq),
        event.id[:12],
        event.state,
        printable(event.action, _CELL_WIDTH),
        shown_token(event.signing_token),
        str(event.attempts),
        received,
        _short_error(event.last_error, secrets),
    ]


def _describe(event: StoredEvent) -> list[str]:
    """``show``'s lines; what a sender or a handler wrote is shown printable and cut."""
    lines = [
        f"id:           {event.id}",
        f"seq:          {event.seq}",
        f"state:        {event.state}",
        f"action:       {printable(event.action)}",
        f"token:        {printable(event.signing_token or '-')}",
        f"received:     {_when(event.received_at)}",
        f"attempts:     {event.attempts}",
    ]
    if event.replays:
        only = f" (the last for {printable(event.replay_handler)} only)"
        lines.append(f"replays:      {event.replays}{only if event.replay_handler else ''}")
    if event.state == "pending" and event.next_attempt_at > time.time():
        lines.append(f"next attempt: {_when(event.next_attempt_at)}")
    handlers = ", ".join(sorted(event.handlers_done)) or "-"
    lines.append(f"handlers ok:  {printable(handlers, _LINE_WIDTH)}")
    error = printable(event.last_error or "-", _LINE_WIDTH, backslashes=False)
    lines.append(f"last error:   {error}")
    lines.append(f"body ({printable(event.content_type or 'no content type')}):")
    body = redact(pretty_body(event.body, event.content_type))  # access_token= masked
    return lines + ["  " + printable(line, _LINE_WIDTH) for line in body.splitlines()]
