"""The dead-letter console's HTML: plain server-rendered pages, no script at all.

Every value that comes from outside (a postback's body, action, token, content type,
a handler's name or error, a traceparent) passes through one function,
:meth:`Pages.text`, which masks secrets (the access token and the postback URL's
secret segment in every encoding :mod:`dokobit_async._redact` knows), makes the text
printable (no bidi override reorders what is shown) and HTML-escapes it, quotes
included: a hostile body shows as text, never as markup. The page's style is one
inline block allowed by its hash in the ``Content-Security-Policy``
(:data:`STYLE_HASH`), so the policy allows nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

import attrs

from ._inbox_base import STATES, StoredEvent
from ._redact import printable, redact

__all__ = ["STYLE_HASH", "Filters", "Pages", "pretty_body"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.2em .6em;
text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.8em;overflow:auto;
white-space:pre-wrap;word-break:break-all}.dead{color:#b00}.note{color:#666}
.done-msg{background:#e8f5e9;padding:.4em}form.inline{display:inline}
nav a{margin-right:1em}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
"""The sha256 of the inline style, for ``style-src 'sha256-...'``."""

_LINE_WIDTH = 2000  # characters of one line of a body or an error
_CELL_WIDTH = 60  # characters of a value in a table cell
_MESSAGES = {  # what the page says after a write (chosen by name: nothing reflected)
    "retried": "Sent back to the handlers: the event is pending again.",
    "replayed": "Replayed: the event is pending again, for its handlers to run once more.",
    "unchanged": "Nothing moved: the event is no longer in a state for that.",
}


@attrs.frozen
class Filters:
    """The list's filters, as the query string gave them (checked by the console)."""

    state: str = ""
    action: str = ""
    token: str = ""
    since: str = ""
    until: str = ""

    def query(self, **changes: str) -> str:
        """This filter (with ``changes``) as a query string, empty values left out."""
        values = attrs.asdict(self) | changes
        return urlencode({k: v for k, v in values.items() if v})


def when(timestamp: float) -> str:
    """Local time, to the second."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def pretty_body(body: bytes, content_type: str) -> str:
    """A postback body as text: JSON indented, a form as a JSON object, else as is."""
    text = body.decode("utf-8", errors="replace")
    try:
        value: object = json.loads(text)
    except ValueError:
        value = dict(parse_qsl(text)) if "form" in content_type else None
    return text if value is None else json.dumps(value, indent=2, ensure_ascii=False)


@attrs.frozen
class Pages:
    """Renders the console's pages; ``secrets`` are masked wherever they appear."""

    secrets: Sequence[str] = ()

    def text(self, value: object, limit: int = _LINE_WIDTH) -> str:
        """Outside text made safe for HTML: secrets masked, printable, escaped."""
        masked = redact(value if isinstance(value, str) else str(value), self.secrets)
        return html.escape(printable(masked, limit), quote=True)

    def page(self, title: str, body: str) -> str:
        """A whole document around ``body`` (``title`` is ours, never a sender's)."""
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)} · dokobit-async console</title>"
            f"<style>{_STYLE}</style></head><body>"
            '<nav><a href="/">All events</a>'
            + "".join(f'<a href="/?state={s}">{s}</a>' for s in sorted(STATES))
            + f"</nav><h1>{html.escape(title)}</h1>{body}</body></html>"
        )

    def overview(
        self,
        counts: Mapping[str, int],
        filters: Filters,
        events: Sequence[StoredEvent],
        *,
        looked_at: int,
        scan_limit: int,
        shown_limit: int,
        matched: int,
    ) -> str:
        """Counts by state, the filter form and the matching events, newest first."""
        count_rows = "".join(
            f'<tr><td><a href="/?{Filters(state=s).query()}">{s}</a></td>'
            f'<td class="count" data-state="{s}">{counts.get(s, 0)}</td></tr>'
            for s in sorted(STATES)
        )
        total = sum(counts.values())
        scope = html.escape(filters.state or "any state")
        note = (
            f"Looked at {looked_at} event{'' if looked_at == 1 else 's'} in {scope}, "
            f"oldest first, at most {scan_limit}: the inbox filters by state only, the "
            "console filters by action, signing and time over those rows. "
            f"{matched} matched; the newest {min(matched, shown_limit)} are shown."
        )
        return self.page(
            "Inbox",
            f'<table id="counts"><tr><th>state</th><th>events</th></tr>{count_rows}'
            f"<tr><td>all</td><td>{total}</td></tr></table>"
            + self._filter_form(filters)
            + f'<p class="note" id="scope">{note}</p>'
            + self._event_table(events),
        )

    def _filter_form(self, filters: Filters) -> str:
        options = "".join(
            f'<option value="{s}"{" selected" if s == filters.state else ""}>{s or "any"}</option>'
            for s in ["", *sorted(STATES)]
        )

        def field(name: str, label: str, kind: str = "text") -> str:
            value = self.text(getattr(filters, name), 200)
            return f'<label>{label} <input type="{kind}" name="{name}" value="{value}"></label> '

        return (
            '<form method="get" action="/" id="filters">'
            f'<label>state <select name="state">{options}</select></label> '
            + field("action", "action")
            + field("token", "signing token (prefix)")
            + field("since", "received from", "datetime-local")
            + field("until", "until", "datetime-local")
            + '<button type="submit">Filter</button></form>'
        )

    def _event_table(self, events: Sequence[StoredEvent]) -> str:
        if not events:
            return '<p id="empty">No events match.</p>'
        rows = "".join(
            f'<tr class="event" data-id="{html.escape(e.id)}"><td>{e.seq}</td>'
            f'<td><a href="/event?{html.escape(urlencode({"id": e.id}))}">'
            f"{self.text(e.id[:12], 12)}</a></td>"
            f'<td class="{e.state}">{e.state}</td><td>{self.text(e.action, _CELL_WIDTH)}</td>'
            f"<td>{self.text(e.signing_token or '-', _CELL_WIDTH)}</td><td>{e.attempts}</td>"
            f"<td>{when(e.received_at)}</td>"
            f"<td>{self.text(e.last_error or '-', _CELL_WIDTH)}</td></tr>"
            for e in events
        )
        head = "".join(
            f"<th>{h}</th>"
            for h in ("seq", "id", "state", "action", "signing", "tries", "received", "error")
        )
        return f'<table id="events"><tr>{head}</tr>{rows}</table>'

    def event(self, event: StoredEvent, csrf: str, message: str | None) -> str:
        """One event: its fields, its body, and the buttons that fit its state."""
        rows: list[tuple[str, str]] = [
            ("id", self.text(event.id)),
            ("seq", str(event.seq)),
            ("state", event.state),
            ("action", self.text(event.action)),
            ("signing token", self.text(event.signing_token or "-")),
            ("received", when(event.received_at)),
            ("failed attempts", str(event.attempts)),
            ("replays", str(event.replays)),
        ]
        if event.state == "pending" and event.next_attempt_at > time.time():
            rows.append(("next attempt", when(event.next_attempt_at)))
        if event.replay_handler:
            rows.append(("replayed for", self.text(event.replay_handler)))
        handlers = ", ".join(sorted(event.handlers_done)) or "-"
        rows += [
            ("handlers done", self.text(handlers)),
            ("last error", self.text(event.last_error or "-")),
            ("traceparent", self.text(event.traceparent or "-")),
            ("content type", self.text(event.content_type or "-")),
        ]
        table = "".join(
            f'<tr><th>{name}</th><td id="f-{name.replace(" ", "-")}">{value}</td></tr>'
            for name, value in rows
        )
        body = pretty_body(event.body, event.content_type)
        lines = "\n".join(self.text(line) for line in body.splitlines())
        shown = _MESSAGES.get(message or "")
        return self.page(
            "Event",
            (f'<p class="done-msg" id="message">{shown}</p>' if shown else "")
            + f'<table id="event">{table}</table>'
            + self._buttons(event, csrf)
            + f'<h2>Body</h2><pre id="body">{lines}</pre>',
        )

    def _buttons(self, event: StoredEvent, csrf: str) -> str:
        forms: Iterable[tuple[str, str]] = ()
        if event.state in ("dead", "unconfirmed"):
            forms = [("retry", "Retry")]
        elif event.state == "done":
            forms = [("replay", "Replay")]
        return "".join(
            f'<form class="inline" method="post" action="/event/{action}">'
            f'<input type="hidden" name="id" value="{html.escape(event.id)}">'
            f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
            f'<button type="submit">{label}</button></form> '
            for action, label in forms
        )

    def missing(self) -> str:
        """The page for an id the inbox does not hold."""
        return self.page("No such event", '<p id="empty">The inbox holds no such event.</p>')
