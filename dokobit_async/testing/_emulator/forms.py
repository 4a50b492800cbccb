"""Request bodies: size-capped reading and PHP bracket-name parsing.

The Universal API examples send ``application/x-www-form-urlencoded`` built by PHP's
``http_build_query`` (``files[0][content]``, ``allowed_signing_methods[0]``); the
connector sends JSON; the Portal examples send multipart with bracket names
(``docs/wire-notes.md#body-encoding``). All three become the same nested
``dict``/``list``/``str`` tree here.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import INVALID_TYPE, EmulatedApiError, EmulatedFieldError, ValidationFailed

__all__ = ["parse_bracket_pairs", "path_of", "read_body"]

_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_MAX_DEPTH = 8
_MAX_FIELDS = 20000
_CHUNK = 256 * 1024


def path_of(keys: Sequence[str | int]) -> str:
    """Bracket notation of a key path: ``["signers", 0, "code"]`` → ``[signers][0][code]``."""
    return "".join(f"[{k}]" for k in keys)


def _too_large(max_bytes: int) -> EmulatedApiError:
    return EmulatedApiError(413, f"Request body is larger than {max_bytes} bytes.", code=413)


def _malformed(what: str) -> ValidationFailed:
    return ValidationFailed(
        [EmulatedFieldError(field="[body]", message=what, error_code=INVALID_TYPE)]
    )


async def _read_limited(request: web.Request, max_bytes: int) -> bytearray:
    buf = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        if len(buf) + len(chunk) > max_bytes:
            raise _too_large(max_bytes)
        buf += chunk
    return buf


async def _read_multipart(request: web.Request, max_bytes: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    total = 0
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise _malformed("Nested multipart bodies are not supported.")
        data = bytearray()
        while True:
            chunk = await part.read_chunk(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise _too_large(max_bytes)
            data += chunk
        if part.name is None:
            continue
        charset = part.get_charset(default="utf-8")
        pairs.append((part.name, data.decode(charset)))
        if len(pairs) > _MAX_FIELDS:
            raise _malformed("Too many fields.")
    return pairs


async def read_body(request: web.Request, *, max_bytes: int, max_index: int) -> dict[str, Any]:
    """Read and parse the request body into a nested tree; ``{}`` when there is none.

    Raises :class:`EmulatedApiError` (413) past ``max_bytes`` and :class:`ValidationFailed` for
    a body that cannot be parsed; never anything else.
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise _too_large(max_bytes)
    ctype = request.content_type
    try:
        if ctype.startswith("multipart/"):
            return parse_bracket_pairs(await _read_multipart(request, max_bytes), max_index)
        raw = await _read_limited(request, max_bytes)
        if not raw.strip():
            return {}
        if ctype == "application/json" or ctype.endswith("+json") or raw.lstrip()[:1] == b"{":
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise _malformed("The JSON body must be an object.")
            return data
        text = raw.decode("utf-8")
        del raw
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=_MAX_FIELDS
        )
        return parse_bracket_pairs(pairs, max_index)
    except EmulatedApiError:
        raise
    except RecursionError:
        raise _malformed("The body is nested too deeply.") from None
    except Exception as exc:  # any parser failure is the client's fault, never a 500
        raise _malformed(f"Malformed request body ({type(exc).__name__}).") from None


def _split_name(name: str) -> list[str]:
    match = _NAME.match(name)
    if match is None:
        return [name]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _index_key(segment: str, container: dict[Any, Any], max_index: int) -> str | int | None:
    """An ``int`` key for list-like segments, the string otherwise; None if out of range."""
    if segment == "":
        return len(container)
    if segment.isdigit() and segment.isascii() and (segment == "0" or segment[0] != "0"):
        if len(segment) > 9 or int(segment) > max_index:
            return None
        return int(segment)
    return segment


def parse_bracket_pairs(pairs: list[tuple[str, str]], max_index: int = 1000) -> dict[str, Any]:
    """Turn ``(name, value)`` pairs with PHP bracket names into a nested tree.

    Objects whose keys are all list indexes become lists ordered by index (sparse
    indexes are compacted); an index above ``max_index`` is a field error, so a
    request like ``files[99999999][name]`` allocates nothing.
    """
    root: dict[Any, Any] = {}
    errors: list[EmulatedFieldError] = []
    for name, value in pairs:
        segments = _split_name(name)
        if len(segments) > _MAX_DEPTH:
            errors.append(
                EmulatedFieldError(field=path_of(segments), message="Field is nested too deeply.")
            )
            continue
        node = root
        keys: list[str | int] = []
        for depth, segment in enumerate(segments):
            key = segment if depth == 0 else _index_key(segment, node, max_index)
            if key is None:
                errors.append(
                    EmulatedFieldError(
                        field=path_of([*keys, segment]),
                        message=f"List index is out of range (max {max_index}).",
                    )
                )
                break
            keys.append(key)
            existing = node.get(key)
            if depth == len(segments) - 1:
                if not isinstance(existing, dict):
                    node[key] = value
                    break
            elif existing is None:
                child: dict[Any, Any] = {}
                node[key] = child
                node = child
                continue
            elif isinstance(existing, dict):
                node = existing
                continue
            errors.append(
                EmulatedFieldError(
                    field=path_of(keys),
                    message="Field is given both as a value and as a list or object.",
                    error_code=INVALID_TYPE,
                )
            )
            break
    if errors:
        raise ValidationFailed(errors)
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(isinstance(k, int) for k in converted):
        return [converted[k] for k in sorted(converted)]
    return {str(k): v for k, v in converted.items()}
