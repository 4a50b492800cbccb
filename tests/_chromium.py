"""How the tests and ``benchmarks/browser_flow_bench.py`` start Debian's Chromium:
where it is and its flags. No pytest here, so that a benchmark can use it too."""

from __future__ import annotations

import os

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these, Chromium opens connections of its own, which this network refuses
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Headless, as root, with nothing of its own going to the network."""


def chromium_path() -> str:
    """``$DOKOBIT_CHROMIUM``, else Debian's ``/usr/bin/chromium`` (never a browser that
    ``playwright install`` downloads: its host is not reachable here)."""
    return os.environ.get("DOKOBIT_CHROMIUM") or "/usr/bin/chromium"
