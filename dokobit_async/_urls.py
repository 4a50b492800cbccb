"""Where the client may send a request, and so the access token. Pure, no I/O.

The token travels in the query string, so it may only ever go to the configured API
origin (scheme, host and port of ``base_url``) and under its path. File URLs from a
status answer or a postback (:func:`file_url_path`) and the targets of a download's
redirects (:func:`redirect_path`) are checked here; anything else, including any URL
that is not a well-formed http(s) URL, is refused. :func:`refused_redirect` builds the
error for a redirect that is not followed, showing only the target's origin, and
:func:`shown_url` is how any URL of a call appears in an error or a log line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

from ._redact import redact
from .exceptions import RedirectError

if TYPE_CHECKING:
    from ._request import Request

__all__ = [
    "api_url",
    "file_url_path",
    "origin_of",
    "redirect_path",
    "refused_redirect",
    "server_address",
    "shown_url",
]

MAX_REDIRECTS = 3
"""How many redirects a download follows (on the API's own origin only)."""

# whitespace, control characters and backslashes: a well-formed URL escapes them, and
# parsers disagree on what they mean (WHATWG reads "https:\\evil" as https://evil)
_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")


def api_url(base_url: str, path: str) -> str:
    """``{base_url}{path}`` without the token (the client adds it as a parameter)."""
    return base_url.rstrip("/") + path


def shown_url(url: str, path: str = "") -> str:
    """``url`` (then ``path``, if given; without the token) as errors and logs show it:
    with ``access_token=***`` where the client adds the token. Not yet redacted: what
    shows it redacts it."""
    return f"{url}{path}{'&' if '?' in url or '?' in path else '?'}access_token=***"


def server_address(url: str) -> str:
    """A server's URL (a Redis one, say) as messages show it: scheme, host, port and
    path, never its user, password or query (which may hold one). A port that is not
    a number is left out (the URL is refused where it is used)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


def file_url_path(base_url: str, url: str) -> str | None:
    """For a file URL under ``base_url`` (same scheme, host and port, and under its
    path), the rest of its path and its query minus any ``access_token``, ready for
    :func:`api_url`; ``None`` for any other URL, and for any malformed one (not
    http(s), no host, a bad port, whitespace, control characters or backslashes, a
    ``.``/``..`` segment). A path starting with one ``/`` is taken relative to
    ``base_url``."""
    if not isinstance(url, str) or not url or _UNSAFE_IN_URL.search(url):
        return None
    if url.startswith("/") and not url.startswith("//"):
        url = api_url(base_url, url)
    try:
        base, target = urlsplit(base_url), urlsplit(url)
        base_origin, origin = _origin(base), _origin(target)
    except ValueError:  # a port that is not a number in 0-65535, a broken IPv6 host
        return None
    prefix = base.path.rstrip("/")
    path = target.path or "/"
    if (
        origin != base_origin
        or target.scheme not in ("http", "https")
        or target.username is not None
        or target.password is not None
        or not path.startswith(prefix + "/")
        # aiohttp resolves dot segments (%2e too), which could leave the base path
        or any(part in (".", "..") for part in unquote(path).split("/"))
    ):
        return None
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(target.query, keep_blank_values=True)
            if k.lower() != "access_token"
        ]
    )
    return urlunsplit(("", "", path[len(prefix) :], query, ""))


def redirect_path(base_url: str, current_url: str, location: str | None) -> str | None:
    """Where a download may follow a redirect: ``location`` (resolved against
    ``current_url``) as :func:`file_url_path` gives it, so only on the base URL's own
    scheme, host, port and path; ``None`` for anywhere else.

    An https API therefore never follows to http. With an http base URL (the
    emulator, a local proxy), a redirect to the same http origin is followed: the
    token already travels there in the clear, so following sends it nowhere new.
    """
    if not isinstance(location, str) or not location.strip():
        return None
    try:
        target = urljoin(current_url, location.strip())
    except ValueError:
        return None
    return file_url_path(base_url, target)


def origin_of(url: str | None, relative_to: str = "") -> str:
    """``scheme://host[:port]`` of ``url`` (resolved against ``relative_to``), never its
    user info, path or query; ``""`` when it has no scheme and host or cannot be read."""
    if not isinstance(url, str) or not url.strip():
        return ""
    try:
        parts = urlsplit(urljoin(relative_to, url.strip()))
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


def refused_redirect(
    request: Request,
    *,
    status: int,
    url: str,
    location: str | None,
    base_url: str,
    exhausted: bool,
    secret: str,
) -> RedirectError:
    """The error for a redirect that is not followed: a JSON call's, a download's to
    another origin, or a download's after :data:`MAX_REDIRECTS`.

    Args:
        request: The call (the error's ``request``).
        status: The redirect's HTTP status.
        url: The URL that answered with it, without the token.
        location: Its ``Location`` header; only the origin is shown.
        base_url: The client's base URL.
        exhausted: Whether a download ran out of redirects to follow.
        secret: The access token, masked wherever it appears.

    Returns:
        The error, its URL shown with ``access_token=***`` and redacted.
    """
    origin = redact(origin_of(location, url), secret)
    if not request.returns_file:
        why = "API calls never follow redirects"
    elif exhausted:
        why = f"a download follows at most {MAX_REDIRECTS}"
    else:
        why = f"downloads follow redirects only on {origin_of(base_url) or 'the API'}"
    return RedirectError(
        f"redirect to {origin or 'an unusable Location'} not followed: {why}",
        status=status,
        method=request.method,
        url=redact(shown_url(url), secret),
        location_origin=origin,
        request=request,
    )
