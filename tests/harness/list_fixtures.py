"""Invented squidGuard list trees for the tests.

Each tree is kept as one YAML file (``tests/fixtures/<name>.yaml``: category → file name →
text) and written out as ``<category>/domains|urls|expressions`` in a temporary folder the first
time a test asks for it, so the repository holds no list files of its own.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import yaml

from categories.domain_index import DomainIndex, ListInfo, build_index
from categories.list_formats import url_entry

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@cache
def list_tree(name: str) -> Path:
    """The tree ``name`` (``ut1_mini`` or ``proxy_lists``) on disk, as squidGuard lays it out."""
    data: dict[str, dict[str, str]] = yaml.safe_load(
        (FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"))
    base = Path(tempfile.mkdtemp(prefix="esafety-lists-"))
    atexit.register(shutil.rmtree, base, True)
    root = base / name
    for category, files in data.items():
        (root / category).mkdir(parents=True)
        for file_name, text in files.items():
            (root / category / file_name).write_text(text, encoding="utf-8")
    return root


def index_of(lists: dict[str, list[str]]) -> DomainIndex:
    """A compiled index of small in-memory lists (list name -> domains or ``host/path``
    entries), each named ``test/<list name>`` as its source."""
    infos: list[ListInfo] = []
    entries = []
    for list_id, (name, values) in enumerate(lists.items()):
        infos.append(ListInfo(name, f"test/{name}"))
        for line, value in enumerate(values, start=1):
            entry = url_entry(value)
            assert not isinstance(entry, str), entry
            entries.append((list_id, entry.kind, entry.value, line))
    return build_index(infos, entries)
