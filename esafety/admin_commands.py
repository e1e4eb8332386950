"""``esafety admin`` and ``esafety users``: subcommands of the admin API."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the admin API's subcommands (handlers import aiohttp lazily)."""
