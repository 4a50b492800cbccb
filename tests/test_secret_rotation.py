"""Rotating the postback secret without downtime
(``docs/architecture.md#rotating-the-postback-secret``): ``PostbackReceiver(secret=[new,
old])`` mints with the first and verifies with any, over real loopback HTTP and a real
SQLite inbox kept across restarts; every secret, old or new, is masked in stored
handler errors, log lines and the repr; bad lists are refused by position, never by
value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from _receiver_helpers import postback, start_receiver

from dokobit_async import DispatchPolicy, InvalidArgumentError, SQLiteInbox
from dokobit_async.events import Event, verify_postback_secret
from dokobit_async.inbox import MemoryInbox
from dokobit_async.receiver import PostbackReceiver
from dokobit_async.routing import Router
from dokobit_async.testing import postback_url

OLD = "Kq3vW/Zz8pQ+Rt5mJ=Yx2nL%Hb7cX-old"
NEW = "Ab9Dk/Gh4Jm+Np6Qr=St8Uv%Wx5Yz-new"


def segment_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def minted(secret: str) -> str:
    """A fresh URL segment minted under ``secret`` (by the test kit, not a receiver)."""
    return segment_of(postback_url("https://hooks.example.com", secret))


def fragments(secret: str) -> list[str]:
    """Runs of 4+ letters and digits: what any spelling of ``secret`` still shows."""
    return re.findall(r"[A-Za-z0-9]{4,}", secret)


def assert_nothing_of(secrets: Sequence[str], shown: str) -> None:
    for secret in secrets:
        for fragment in fragments(secret):
            assert fragment not in shown, f"{fragment!r} of a secret is shown"


class Served:
    """A receiver on 127.0.0.1 with the given secrets, on the SQLite file ``db``."""

    def __init__(self, db: Path, secret: Any, router: Router | None = None, **options: Any):
        self.db, self.secret, self.router = db, secret, router or Router()
        self.options = options

    async def __aenter__(self) -> Served:
        self.inbox = SQLiteInbox(self.db)
        self.receiver, self.runner, self.url = await start_receiver(
            self.router, inbox=self.inbox, secret=self.secret, confirm=False, **self.options
        )
        self.base = self.url.rsplit("/", 1)[0]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def post(self, segment: str, token: str) -> int:
        """POST a postback for ``token`` to this receiver's path with ``segment``."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.base}/{segment}",
                data=postback(token),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            return response.status

    async def tokens(self) -> list[str]:
        return sorted(e.signing_token for e in await self.inbox.list(limit=1000))


async def test_a_url_minted_with_the_old_secret_works_during_the_overlap_only(
    tmp_path: Path,
) -> None:
    """The rotation, across restarts on one inbox file: a URL minted under the old
    secret is accepted while ``[new, old]`` are set and refused (401, nothing stored)
    once ``[new]`` is; a URL minted during the overlap carries the new secret, so a
    receiver with only the new one accepts it."""
    db = tmp_path / "pb.db"
    async with Served(db, OLD) as before:
        old_segment = segment_of(before.url)
        assert await before.post(old_segment, "T-before") == 200

    async with Served(db, [NEW, OLD]) as overlap:
        assert await overlap.post(old_segment, "T-old-in-overlap") == 200
        minted = segment_of(overlap.receiver.postback_url("https://hooks.example.com"))
        assert verify_postback_secret(NEW.encode(), minted)
        assert not verify_postback_secret(OLD.encode(), minted)
        assert await overlap.post(minted, "T-new-in-overlap") == 200
        assert await overlap.tokens() == ["T-before", "T-new-in-overlap", "T-old-in-overlap"]

    async with Served(db, [NEW]) as after:
        assert await after.post(old_segment, "T-old-after") == 401
        assert await after.post(minted, "T-new-after") == 200
        assert await after.tokens() == [
            "T-before",
            "T-new-after",
            "T-new-in-overlap",
            "T-old-in-overlap",
        ]


async def test_any_secret_verifies_and_a_forged_segment_does_not(tmp_path: Path) -> None:
    """With three secrets, a URL minted under each is accepted; a segment minted under
    a fourth, or with one changed digit, is 401 and stores nothing."""
    third = "third-secret-0123456789abcdef"
    async with Served(tmp_path / "pb.db", [NEW, OLD, third]) as served:
        for number, secret in enumerate((NEW, OLD, third)):
            assert await served.post(minted(secret), f"T{number}") == 200
        stranger = minted("a-stranger-secret-0123456789")
        assert await served.post(stranger, "T-stranger") == 401
        good = minted(OLD)
        forged = good[:-1] + ("0" if good[-1] != "0" else "1")
        assert await served.post(forged, "T-forged") == 401
        assert await served.tokens() == ["T0", "T1", "T2"]


def test_verify_accepts_one_secret_or_several() -> None:
    """``verify_postback_secret`` keeps taking one key, and takes several."""
    segment = minted(OLD)
    assert verify_postback_secret(OLD.encode(), segment)
    assert verify_postback_secret([NEW.encode(), OLD.encode()], segment)
    assert verify_postback_secret((OLD.encode(),), segment)
    assert not verify_postback_secret([NEW.encode()], segment)
    assert not verify_postback_secret([], segment)


def test_the_repr_counts_the_secrets_and_shows_none() -> None:
    """``secret=*** (2)``: how many, never which."""
    receiver = _receiver([NEW, OLD])
    assert repr(receiver) == "<PostbackReceiver path='/dokobit/postback' secret=*** (2)>"
    assert repr(_receiver(NEW)) == "<PostbackReceiver path='/dokobit/postback' secret=*** (1)>"
    assert_nothing_of([NEW, OLD], repr(receiver))


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ([], "secret is an empty sequence"),
        ((), "secret is an empty sequence"),
        ([NEW, "too-short-1234"], "secret[1] must be at least 16 bytes long"),
        ([NEW, OLD, NEW], "secret[2] is the same as secret[0]"),
        ([NEW, NEW.encode()], "secret[1] is the same as secret[0]"),
        ("too-short-1234", "secret must be at least 16 bytes long"),
        ([NEW, 12345678901234567890], "secret[1] must be bytes or str, not int"),
        ({NEW, OLD}, "secret must be bytes, str or a sequence of them, not set"),
    ],
)
def test_a_bad_secret_list_is_refused_by_position(secret: Any, says: str) -> None:
    """Each error names the secret's position, never its value."""
    with pytest.raises(InvalidArgumentError) as caught:
        _receiver(secret)
    assert says in str(caught.value)
    assert_nothing_of([NEW, OLD], str(caught.value))


async def test_every_secret_is_masked_in_stored_errors_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler whose error carries the old and the new secret, in several spellings:
    the stored error, every log line and the repr show nothing of either."""
    router = Router()

    @router.on_any
    async def leaky(event: Event) -> None:
        spellings = [
            *(NEW, OLD),
            *(quote(s, safe="") for s in (NEW, OLD)),
            *(quote_plus(s) for s in (NEW, OLD)),
            json.dumps({"a": NEW, "b": OLD}).replace("/", "\\/"),
            repr(NEW.encode()),
            repr(OLD.encode()),
        ]
        raise RuntimeError(" | ".join(spellings))

    caplog.set_level(logging.DEBUG, logger="dokobit_async")
    once = DispatchPolicy(max_attempts=1)
    async with Served(tmp_path / "pb.db", [NEW, OLD], router, policy=once) as served:
        assert await served.post(segment_of(served.url), "T-leak") == 200
        await served.receiver.wait_idle()
        (stored,) = await served.inbox.list(limit=10)
        assert stored.state == "dead"
        assert stored.last_error is not None
        assert "RuntimeError" in stored.last_error
        assert "***" in stored.last_error
        shown = stored.last_error + repr(served.receiver) + caplog.text
    assert "RuntimeError" in caplog.text
    assert_nothing_of([NEW, OLD], shown)


def _receiver(secret: Any) -> PostbackReceiver:
    return PostbackReceiver(Router(), inbox=MemoryInbox(), secret=secret, confirm=False)
