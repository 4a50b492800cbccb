"""The call path's work done once instead of per call, and that it changes nothing.

* each answer model's structuring function is generated once; a model built by
  setting its slots is indistinguishable from one built by its ``__init__``, and a
  model whose ``__init__`` does more than store its arguments is built through it;
* the request URL with the access token is built once per URL and kept (bounded) by
  the client, and it is byte for byte the target aiohttp sends for ``params``.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import aiohttp
import attrs
import pytest
from _loopback import loopback
from yarl import URL

from dokobit_async import DecodeError, DokobitClient, SigningStatus, _models_answers, sansio
from dokobit_async._answers import decipher_json
from dokobit_async._convert import structure
from dokobit_async._transport import with_token

ANSWER_MODELS = [getattr(_models_answers, name) for name in _models_answers.__all__]
TOKEN = "call path token/+&=é"  # every character that a query must escape


def example(cls: type[Any], depth: int = 0) -> dict[str, Any]:
    """A JSON object with every field of ``cls`` set (nested models too), and a key
    that no model knows."""
    data: dict[str, Any] = {"unknown_key": [1, {"x": None}]}
    for field in attrs.fields(cls):
        if field.name == "raw":
            continue
        tp = next(a for a in typing.get_args(field.type) or (field.type,) if a is not None)
        if typing.get_origin(field.type) is tuple:
            data[field.name] = [example(typing.get_args(field.type)[0], depth + 1)] * 2
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            data[field.name] = next(iter(tp)).value
        elif tp is datetime:
            data[field.name] = "2026-11-27T10:00:00+02:00"
        else:
            data[field.name] = 12345 if depth % 2 else f"{field.name} value"
    return data


@pytest.mark.parametrize("cls", ANSWER_MODELS, ids=lambda c: c.__name__)
def test_a_model_built_from_its_slots_equals_one_built_by_its_init(cls: type[Any]) -> None:
    """Every answer model, structured from a full answer: equal to the same values
    passed through its ``__init__`` (``attrs.evolve``), with the same repr, hash and
    fields, its ``raw`` the whole decoded object, read-only."""
    attrs.resolve_types(cls)
    data = example(cls)
    built = structure(data, cls)
    again = attrs.evolve(built)
    assert type(built) is cls
    assert built == again
    assert repr(built) == repr(again)
    assert hash(built) == hash(again)
    assert attrs.asdict(built, recurse=False) == attrs.asdict(again, recurse=False)
    assert isinstance(built.raw, MappingProxyType)
    assert dict(built.raw) == data
    for field in attrs.fields(cls):
        if field.type in (str, str | None):  # text is taken as it is, numbers as text
            assert getattr(built, field.name) == str(data[field.name])


@pytest.mark.parametrize("cls", ANSWER_MODELS, ids=lambda c: c.__name__)
def test_absent_or_null_fields_take_their_defaults(cls: type[Any]) -> None:
    """Only the required fields given, the others absent or ``null``: the defaults,
    exactly as the ``__init__`` gives them."""
    required = {f.name: "given" for f in attrs.fields(cls) if f.default is attrs.NOTHING}
    nulls = {f.name: None for f in attrs.fields(cls) if f.name not in required}
    for data in (required, {**required, **nulls}):
        assert structure(data, cls) == cls(**required, raw=MappingProxyType(data))


def test_a_missing_required_field_is_a_decode_error_of_the_call() -> None:
    """A status answer without its ``status`` cannot be a ``SigningStatus``."""
    request = sansio.Request(operation="external.status", method="GET", path="/api/x")
    with pytest.raises(DecodeError) as caught:
        decipher_json(request, 200, b'{"name": "n"}', SigningStatus, url="u", secret="t")
    assert caught.value.request is request


def _upper(text: str) -> str:
    return text.upper()


@attrs.frozen(kw_only=True)
class _Shouting:
    """An answer model whose ``__init__`` converts and checks: it must run."""

    word: str = attrs.field(converter=_upper)
    count: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    raw: Mapping[str, Any] = attrs.field(default=MappingProxyType({}), eq=False)


def test_a_model_whose_init_does_more_is_built_through_it() -> None:
    """Converters and validators are not skipped: such a model goes through its
    ``__init__``."""
    assert structure({"word": "quiet"}, _Shouting).word == "QUIET"
    with pytest.raises(ValueError, match="count"):
        structure({"word": "w", "count": -1}, _Shouting)


async def test_the_url_with_the_token_is_the_one_aiohttp_sends_for_params() -> None:
    """The target the client sends (the token put in by ``with_token``) is byte for
    byte what aiohttp sends when given the token as ``params``."""
    async with (
        loopback() as host,
        aiohttp.ClientSession() as session,
        DokobitClient(TOKEN, base_url=host.url, rate_limit=None) as client,
    ):
        await client.external.status("SIG 1")
        url = f"{host.url}/api/signing-external/SIG%201/status.json"
        async with session.get(url, params={"access_token": TOKEN}):
            pass
    ours, aiohttp_own = (seen.target for seen in host.seen)
    assert ours == aiohttp_own
    assert URL(ours).query["access_token"] == TOKEN


async def test_polling_one_signing_builds_its_url_once() -> None:
    """Three calls for one signing and one for another: two URLs built and kept."""
    async with (
        loopback() as host,
        DokobitClient(TOKEN, base_url=host.url, rate_limit=None) as client,
    ):
        for token in ("A", "A", "B", "A"):
            await client.external.status(token)
        kept = dict(client._targets)
    assert len(host.seen) == 4
    assert sorted(URL(u).path for u in kept) == [
        "/api/signing-external/A/status.json",
        "/api/signing-external/B/status.json",
    ]


def test_the_kept_urls_are_bounded() -> None:
    """A client that calls for many signings keeps at most 256 URLs, and a URL it
    keeps is reused as it is."""
    cache: dict[str, URL] = {}
    first = with_token("http://h/api/0", TOKEN, cache)
    assert with_token("http://h/api/0", TOKEN, cache) is first
    for index in range(1, 600):
        with_token(f"http://h/api/{index}", TOKEN, cache)
        assert len(cache) <= 256
    assert with_token("http://h/api/0", TOKEN) == first
