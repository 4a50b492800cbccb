"""Configuration of the Universal API emulator: behaviour switches and fault injection.

Where the wire notes mark a behaviour as inferred (``docs/wire-notes.md#what-is-inferred``), the
emulator's choice is a switch here, so tests can pin either reading.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs
from attrs import field, frozen

__all__ = ["EmulatorConfig", "FaultKind", "Faults"]


class FaultKind(str, enum.Enum):
    """The kinds of fault the emulator can inject into API requests."""

    RATE_LIMITED = "429_retry_after"
    """HTTP 429 with a ``Retry-After`` header."""
    RATE_LIMITED_BARE = "429"
    """HTTP 429 without ``Retry-After``."""
    SERVER_ERROR = "500"
    """HTTP 500 with the server-error envelope; the request has no effect."""
    BAD_GATEWAY = "502"
    """HTTP 502 (as a proxy in front of the API would answer); no effect."""
    UNAVAILABLE = "503"
    """HTTP 503; no effect."""
    SLOW = "slow"
    """The request is processed normally after :attr:`Faults.slow_delay` seconds."""
    DROP_BEFORE = "drop_before"
    """The connection is closed before the request body is read; no effect."""
    DROP_AFTER = "drop_after"
    """The request takes effect, then the connection is closed with no response."""


def _default_weights() -> Mapping[FaultKind, float]:
    return MappingProxyType(dict.fromkeys(FaultKind, 1.0))


def _freeze_weights(value: Mapping[FaultKind, float]) -> Mapping[FaultKind, float]:
    return MappingProxyType({FaultKind(k): float(v) for k, v in value.items()})


def _check_rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within 0..1, got {value!r}")


def _names(value: Iterable[str] | None) -> frozenset[str] | None:
    """``operations`` as given (any iterable of names), frozen."""
    return None if value is None else frozenset(value)


@frozen(kw_only=True)
class Faults:
    """Random faults injected into API routes (never into postbacks or pages).

    ``rate`` is the share of API requests that get a fault; the kind is drawn with
    ``weights`` from a generator seeded with ``seed``, so runs are reproducible.
    ``operations`` limits injection to some operation names (``"signing-external/create"``).
    """

    rate: float = field(default=0.0, validator=_check_rate)
    """Share of API requests that get a fault, 0..1."""
    seed: int | None = 0
    """Seed of the fault generator (``None``: not reproducible)."""
    weights: Mapping[FaultKind, float] = field(
        factory=_default_weights, converter=_freeze_weights, hash=False
    )
    """Relative weight of each fault kind; kinds absent or at 0 are never drawn."""
    slow_delay: float = 1.0
    """Seconds a :attr:`FaultKind.SLOW` response is held back."""
    retry_after: int = 1
    """Value of the ``Retry-After`` header for :attr:`FaultKind.RATE_LIMITED`."""
    operations: frozenset[str] | None = field(default=None, converter=_names)
    """Operation names eligible for faults; ``None`` means every API operation."""


@frozen(kw_only=True)
class EmulatorConfig:
    """Behaviour switches of :class:`~dokobit_async.testing.Emulator`."""

    unknown_token_status: int = 400
    """HTTP status for an unknown signing token: 400 (field ``[token]``) or 404."""
    single_pdf: bool = False
    """Enforce the old rule that a ``type=pdf`` signing takes exactly one file."""
    max_upload_bytes: int = 64 * 1024 * 1024
    """Largest accepted request body, in bytes; larger bodies get a 413 envelope."""
    postback_retry_delays: tuple[float, ...] = (300.0, 3600.0, 86400.0)
    """Delays (seconds, before scaling) of postback retries after a failed attempt."""
    time_scale: float = 1.0
    """Factor applied to postback retry delays (``0.0001`` turns hours into ms)."""
    postback_timeout: float = 10.0
    """Seconds one postback delivery attempt may take."""
    rate_limit: tuple[int, float] | None = None
    """``(N, window)``: more than N API requests per ``window`` seconds get HTTP 429."""
    faults: Faults | None = None
    """Random fault injection into API routes, or ``None``."""
    require_digest: bool = False
    """Reject files without ``digest``; by default a digest is verified only if sent."""
    accept_header_token: bool = True
    """Also accept the access token in an ``X-Access-Token`` header."""
    declined_status: str | None = None
    """Document status after a decline (``None`` keeps ``pending``), e.g. ``"declined"``."""
    shared_token_space: bool = False
    """Let ``signing-external/...`` routes reach internal signings and vice versa."""
    internal_add_redirect_uri: bool = True
    """Give each signer added to an internal signing its signing-page ``redirect_uri``."""
    max_list_index: int = 1000
    """Largest list index accepted in bracket names such as ``files[N][name]``."""
