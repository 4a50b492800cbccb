"""Every public method tells the truth at runtime: ``inspect.signature`` works, the
parameters are the ones the API takes, the return annotation is the real answer, the
qualified name is the namespace's, and ``help()`` shows a user docstring whose wire
path is the one actually sent. The table and the checks are in ``_operations``.
"""

from __future__ import annotations

import inspect
import pydoc
import re
import types
from typing import cast

import pytest
from _operations import (
    OPERATION_IDS,
    OPERATIONS,
    PDF,
    PLAINTEXT,
    SIGNING,
    Op,
    doc_problems,
    every_public_callable,
    method_of,
    new_client,
    signature_problems,
    unresolved_hints,
    wire_problems,
)

from dokobit_async.exceptions import InvalidArgumentError
from dokobit_async.models import SigningStatus

DOCUMENTED = [pytest.param(op, id=op.path) for op in OPERATIONS]


# ------------------------------------------------------------------ the tests


def test_the_table_lists_every_operation_of_the_client() -> None:
    """A method added to the client or a namespace must be added to ``OPERATIONS``."""
    client = new_client()
    offered = {
        f"{name}.{attr}"
        for name in ("external", "internal", "e_delivery", "validation")
        for attr in dir(getattr(client, name))
        if not attr.startswith("_") and callable(getattr(getattr(client, name), attr))
    }
    offered |= {"seal", "download_file", "open_file"}
    assert sorted(offered) == sorted(OPERATION_IDS)


@pytest.mark.parametrize("op", OPERATIONS, ids=OPERATION_IDS)
def test_signature_names_the_api_parameters_and_the_real_answer(op: Op) -> None:
    """``inspect.signature`` works on the bound method, lists exactly the API's
    parameters (no ``self``, no ``flow``), returns the model (not ``Request``), and
    the method is named after its namespace class."""
    assert signature_problems(new_client(), op) == []


@pytest.mark.parametrize("op", DOCUMENTED)
def test_help_shows_a_user_docstring_with_the_wire_path(op: Op) -> None:
    """``help()`` shows Args (one entry per parameter, in order), Returns (the real
    type), Raises (argument, redirect, API and transport errors) and the wire path."""
    assert doc_problems(new_client(), op) == []


@pytest.mark.parametrize(
    "op", [op for op in OPERATIONS if "{url}" not in op.wire], ids=lambda op: op.path
)
def test_the_documented_wire_path_is_the_one_sent(op: Op) -> None:
    """The Note's ``METHOD /path`` is the request the method builds, and only the
    writes that are never resent warn of ``OutcomeUnknownError``."""
    assert wire_problems(new_client(), op) == []


def test_every_public_callable_has_a_signature() -> None:
    """``inspect.signature`` works on every public callable of the client, its
    namespaces, the receiver, the router and the test kit (bound where it is bound)."""
    client = new_client()
    found = every_public_callable(client)
    failures = []
    for label, item in found:
        try:
            inspect.signature(item)
        except (TypeError, ValueError) as exc:
            failures.append(f"{label}: {exc!r}")
    wrong = [op.path for op in OPERATIONS if signature_problems(client, op)]
    undocumented = [op.path for op in OPERATIONS if doc_problems(client, op)]
    # shown with -s
    print(
        f"\nsignatures: {len(found)} public callables checked, {len(failures)} fail;"
        f" API methods with a wrong signature: {len(wrong)} of {len(OPERATIONS)};"
        f" without a full docstring: {len(undocumented)} {undocumented}"
    )
    assert failures == []
    assert len(found) > 100


# The receiver may name client types only under TYPE_CHECKING (tests/test_layout.py:
# client and receiver do not import each other), so ``get_type_hints`` cannot resolve
# ``client: DokobitClient | None`` at runtime; ``inspect.signature`` shows it as text.
HINTS_NAMING_THE_CLIENT_FROM_THE_RECEIVER = {
    "PostbackReceiver: NameError: name 'DokobitClient' is not defined",
}


def test_typing_get_type_hints_resolves_every_public_callable() -> None:
    """``typing.get_type_hints`` (what cattrs, pydantic and FastAPI call) resolves
    every public callable's annotations, but for the layering exception above."""
    unresolved = set(unresolved_hints(every_public_callable(new_client())))
    assert unresolved == HINTS_NAMING_THE_CLIENT_FROM_THE_RECEIVER


def test_bound_methods_are_plain_functions_in_their_class() -> None:
    """The class holds an ordinary coroutine function (what pydoc, Sphinx and
    ``inspect.getattr_static`` look at), not the binder."""
    client = new_client()
    for op in OPERATIONS:
        method = method_of(client, op)
        raw = inspect.getattr_static(type(method.__self__), method.__name__)
        assert inspect.isfunction(raw), op.path
        assert inspect.iscoroutinefunction(raw) == ("open_" not in op.path), op.path
    page = pydoc.render_doc(type(client.external), renderer=PLAINTEXT)
    page = re.sub(r"\s*\n \|\s*", " ", page).replace("( ", "(")  # 3.13 wraps signatures
    assert "async create(self, *, name: 'str', type: 'SigningType | str'" in page
    assert "async remind(self, token: 'str', signer_token: 'str', *, message" in page


async def test_a_wrong_call_names_the_method_not_the_builder() -> None:
    """A ``TypeError`` for a bad call says ``ExternalSignings.create()``, not the
    private builder's name (raised on ``await``, as for any ``*args`` coroutine)."""
    client = new_client()
    with pytest.raises(TypeError, match=r"^ExternalSignings\.create\(\): .*'name'"):
        await client.external.create(type="pdf", files=[PDF])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^InternalSignings\.status\(\): too many"):
        await client.internal.status(SIGNING, "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^DokobitClient\.seal\(\): .*'reason'"):
        await client.seal(SIGNING, reason="x")  # type: ignore[call-arg]


async def test_a_bad_value_is_still_refused_before_sending() -> None:
    """The rewording touches only ``TypeError``s for the call's shape."""
    with pytest.raises(InvalidArgumentError, match="token must be"):
        await new_client().external.status(" ")


async def test_a_type_error_raised_inside_the_builder_is_left_as_it_is() -> None:
    """Only a call that does not fit the signature is reworded."""
    with pytest.raises(TypeError, match="not iterable"):
        await new_client().external.add_signers(SIGNING, 5)  # type: ignore[arg-type]


def test_a_namespace_is_for_one_flow() -> None:
    """``client.external``'s class cannot be built for the internal flow."""
    client = new_client()
    assert type(client.external)(client, "external").flow == "external"
    with pytest.raises(ValueError, match="the external flow, not 'internal'"):
        type(client.external)(client, "internal")


def test_the_binder_works_outside_a_class_body() -> None:
    """Unassigned, the binder still hands out the function (unbound) or a method."""
    from dokobit_async import _actions
    from dokobit_async._binding import json_action

    action = json_action(_actions.status, SigningStatus, flow="external")
    assert inspect.isfunction(action.__get__(None, object))
    namespace = new_client().external
    bound = action.__get__(namespace, type(namespace))
    assert list(inspect.signature(bound).parameters) == ["token"]
    # typed as the callable it is; at run time a bound method, which this checks
    assert cast(types.MethodType, bound).__self__ is namespace
