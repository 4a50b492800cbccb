"""The pure core, as the public API offers it: requests as data, answers into models
or errors, postbacks into events.

Nothing here touches a socket, a file or the event loop (a test checks that importing
it loads no aiohttp), so these are what an HTTP stack of your own, or a test, can use:

* :class:`Request`: one API call as data (the client's actions build them);
* :func:`parse_json_response`: a JSON answer's body into its decoded object, or the
  matching error (a 2xx ``"status": "error"`` answer is an error too);
* :func:`error_from_response`: an error answer into the matching
  :class:`~dokobit_async.APIError`, every string it carries redacted;
* :func:`parse_postback`: a postback body into its typed event.

The client's own call path lives in private modules beside it (body encoding in
``_bodies``, deciphering answers in ``_answers``).
"""

from __future__ import annotations

from ._answers import error_from_response, parse_json_response
from ._request import Request
from .events import parse_postback

__all__ = ["Request", "error_from_response", "parse_json_response", "parse_postback"]
