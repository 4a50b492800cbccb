"""``dokobit-async inbox list|show|retry|purge``: inspect and repair a listener's inbox.

It works on the inbox of ``listen`` (:mod:`dokobit_async._cli.listen`), an SQLite
file (also while a listener runs on it: WAL) or a Redis inbox
(:mod:`dokobit_async._cli.inboxes`), the same way.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import get_args
from urllib.parse import parse_qsl

from .._redact import printable, redact, shown_token
from ..inbox import Inbox, InboxState, StoredEvent
from .arguments import Command, non_negative, whole_number
from .inboxes import InboxLocation, inbox_location, opened
from .listen import DEFAULT_INBOX
from .output import CliError, out, table

__all__ = ["add_parser", "inbox"]

_STATES = list(get_args(InboxState))
_ERROR_WIDTH = 50
_CELL_WIDTH = 40  # a sender-supplied value in a table cell
_LINE_WIDTH = 2000  # a line of `show`


def add_parser(command: Command) -> None:
    """Add ``inbox`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("inbox", "inspect or repair a listener's inbox", uses_api=False)
    actions = p.add_subparsers(dest="inbox_command", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--inbox",
        default=DEFAULT_INBOX,
        metavar="PATH|URL",
        help="the listener's inbox: a file, sqlite:///PATH or redis://HOST[:PORT][/DB] "
        "(default: %(default)s)",
    )

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
            rows = [header] + [_row(event) for event in events]
            out("\n".join(line[2:] for line in table(rows)))
        elif args.inbox_command == "show":
            out("\n".join(_describe(await _find(box, where, args.event))))
        elif args.inbox_command == "retry":
            event_id = None if args.event is None else (await _find(box, where, args.event)).id
            moved = await box.retry(event_id)
            out(f"{moved} event{'' if moved == 1 else 's'} back to pending")
        else:
            older = None if not args.older_than else time.time() - args.older_than
            gone = await box.purge(state=args.state, older_than=older)
            out(f"{gone} {args.state} event{'' if gone == 1 else 's'} purged")
    return 0


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


def _short_error(error: str | None) -> str:
    if not error:
        return "-"
    # stored errors are printable already (the dispatcher keeps them so)
    return printable(" ".join(error.split()), _ERROR_WIDTH, backslashes=False)


def _row(event: StoredEvent) -> list[str]:
    received = datetime.fromtimestamp(event.received_at).strftime("%m-%d %H:%M:%S")
    return [
        str(event.seq),
        event.id[:12],
        event.state,
        printable(event.action, _CELL_WIDTH),
        shown_token(event.signing_token),
        str(event.attempts),
        received,
        _short_error(event.last_error),
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
    if event.state == "pending" and event.next_attempt_at > time.time():
        lines.append(f"next attempt: {_when(event.next_attempt_at)}")
    handlers = ", ".join(sorted(event.handlers_done)) or "-"
    lines.append(f"handlers ok:  {printable(handlers, _LINE_WIDTH)}")
    error = printable(event.last_error or "-", _LINE_WIDTH, backslashes=False)
    lines.append(f"last error:   {error}")
    lines.append(f"body ({printable(event.content_type or 'no content type')}):")
    body = _pretty_body(event).splitlines()
    return lines + ["  " + printable(line, _LINE_WIDTH) for line in body]


def _pretty_body(event: StoredEvent) -> str:
    text = event.body.decode("utf-8", errors="replace")
    try:
        value: object = json.loads(text)
    except ValueError:
        value = dict(parse_qsl(text)) if "form" in event.content_type else None
    shown = text if value is None else json.dumps(value, indent=2, ensure_ascii=False)
    return redact(shown)  # an access_token= in a URL is masked
