"""Reading list sources: a squidGuard/UT1 tree (folder or ``.tar.gz``) or one flat file.

The result is one :class:`ImportedList` per (list category, file), with every refused line
counted. Nothing here writes anywhere; :mod:`categories.snapshot` stages and compiles.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from categories.list_formats import (
    PARSERS,
    ListFormat,
    ParseResult,
    detect_format,
)

SQUIDGUARD_FILES = {"domains": ListFormat.PLAIN, "urls": ListFormat.URLS}
UNSUPPORTED_FILES = ("expressions",)
MAX_LIST_FILE_BYTES = 512 * 1024 * 1024


class ImportError_(ValueError):
    """The path is not a list source this importer understands."""


@dataclass
class ImportedList:
    name: str
    """The list category, e.g. ``gambling``: category YAML files refer to it."""
    file: str
    """Where it came from inside the source, e.g. ``gambling/domains``."""
    format: ListFormat
    result: ParseResult
    refused: str | None = None
    """Why the whole file was refused (garbage); None when it was accepted."""


def _decode_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def _parse(name: str, file: str, fmt: ListFormat, data: bytes) -> ImportedList:
    if b"\x00" in data[:65536]:
        result = ParseResult()
        result.reject(0, "", "binary file")
        result.rejected_count = max(1, data.count(b"\n"))
        return ImportedList(name, file, fmt, result, refused="the file is binary, not a list")
    result = PARSERS[fmt](_decode_lines(data))
    refused = None
    if result.looks_like_garbage:
        refused = (f"{result.rejected_count} of {result.rejected_count + len(result.entries)} "
                   f"lines were refused; the file does not look like a {fmt.value} list")
    return ImportedList(name, file, fmt, result, refused)


def _unsupported(name: str, file: str, data: bytes) -> ImportedList | None:
    result = ParseResult()
    for number, line in enumerate(_decode_lines(data), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            result.reject(number, text, "regular-expression lists are not supported")
    if result.rejected_count == 0:
        return None
    return ImportedList(name, file, ListFormat.PLAIN, result)


def _tree_members(root: Path) -> Iterator[tuple[str, str, bytes]]:
    for category_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file_name in (*SQUIDGUARD_FILES, *UNSUPPORTED_FILES):
            path = category_dir / file_name
            if path.is_file() and not path.is_symlink():
                if path.stat().st_size > MAX_LIST_FILE_BYTES:
                    raise ImportError_(f"{path} is larger than {MAX_LIST_FILE_BYTES} bytes")
                yield category_dir.name, file_name, path.read_bytes()


def _tar_members(path: Path) -> Iterator[tuple[str, str, bytes]]:
    try:
        archive = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ImportError_(f"{path} is not a readable tar archive: {exc}") from exc
    with archive:
        for member in archive:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            if len(parts) < 2 or parts[-1] not in (*SQUIDGUARD_FILES, *UNSUPPORTED_FILES):
                continue
            if member.size > MAX_LIST_FILE_BYTES:
                raise ImportError_(f"{member.name} is larger than {MAX_LIST_FILE_BYTES} bytes")
            handle = archive.extractfile(member)
            if handle is None:
                continue
            yield parts[-2], parts[-1], handle.read()


def is_squidguard_tree(path: Path) -> bool:
    return path.is_dir() and any(
        (d / f).is_file() for d in path.iterdir() if d.is_dir() for f in SQUIDGUARD_FILES)


def read_source(path: Path, *, list_name: str | None = None, fmt: ListFormat | None = None
                ) -> list[ImportedList]:
    """Read every list in ``path``; raise :class:`ImportError_` if it is not a list source."""
    if not path.exists():
        raise ImportError_(f"{path} does not exist")
    members: Iterator[tuple[str, str, bytes]] | None = None
    if path.is_dir():
        if not is_squidguard_tree(path):
            raise ImportError_(f"{path} is a folder but not a squidGuard tree "
                               "(<category>/domains, <category>/urls)")
        members = _tree_members(path)
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        members = _tar_members(path)
    if members is not None:
        imported: list[ImportedList] = []
        for category, file_name, data in members:
            file = f"{category}/{file_name}"
            if file_name in UNSUPPORTED_FILES:
                item = _unsupported(category, file, data)
                if item is not None:
                    imported.append(item)
                continue
            imported.append(_parse(category, file, SQUIDGUARD_FILES[file_name], data))
        if not imported:
            raise ImportError_(f"{path} holds no squidGuard lists")
        return imported
    if path.stat().st_size > MAX_LIST_FILE_BYTES:
        raise ImportError_(f"{path} is larger than {MAX_LIST_FILE_BYTES} bytes")
    data = path.read_bytes()
    name = list_name or path.name.split(".")[0]
    chosen = fmt or detect_format(io.StringIO(data[:65536].decode("utf-8", "replace")).readlines()[:200])
    return [_parse(name, path.name, chosen, data)]
