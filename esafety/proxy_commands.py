"""``esafety proxy``, ``esafety up`` and ``esafety ca``: subcommands of the proxy."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the proxy's subcommands (handlers import mitmproxy lazily)."""
