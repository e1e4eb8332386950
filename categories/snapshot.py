"""The data directory's lists: staged sources and compiled, versioned snapshots.

Layout under the data directory::

    lists/<source>/manifest.json     what was imported from where, with counts
    lists/<source>/<n>.tsv           canonical entries of one list file: kind, value, line
    snapshots/<version>/...          a compiled DomainIndex (see categories.domain_index)
    snapshots/CURRENT                the version in use, swapped atomically

An import stages a source (replacing that source's previous lists), then compiles every
staged list that a category uses into a new snapshot. A garbage file is refused and the
source's previous copy of that list is kept, so it never reaches a snapshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from categories.definitions import CategorySet
from categories.domain_index import (
    DomainIndex,
    IndexLoadError,
    ListInfo,
    build_index,
    load_index,
    save_index,
)
from categories.list_formats import EntryKind, ListFormat
from categories.list_import import ImportedList, read_source

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEEP_SNAPSHOTS = 3


@dataclass
class ListReport:
    name: str
    file: str
    accepted: int
    rejected: int
    ignored: int
    mapped_to: list[str]
    refused: str | None
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportReport:
    source: str
    lists: list[ListReport]
    snapshot_version: str
    host_entries: int
    url_entries: int
    unmapped_lists: list[str]

    @property
    def rejected_total(self) -> int:
        return sum(r.rejected for r in self.lists)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "snapshot_version": self.snapshot_version,
            "host_entries": self.host_entries,
            "url_entries": self.url_entries,
            "rejected_total": self.rejected_total,
            "unmapped_lists": self.unmapped_lists,
            "lists": [r.__dict__ for r in self.lists],
        }


class SnapshotError(RuntimeError):
    pass


class ListStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lists_dir = data_dir / "lists"
        self.snapshots_dir = data_dir / "snapshots"

    # -- staging -----------------------------------------------------------------------------
    def stage(self, source: str, imported: list[ImportedList], origin: str,
              categories: CategorySet) -> list[ListReport]:
        """Replace ``source``'s staged lists with ``imported`` (refused files keep the old copy)."""
        if not _SOURCE_NAME.match(source):
            raise SnapshotError(f"source name {source!r} must be letters, digits, . _ -")
        target = self.lists_dir / source
        previous = self._read_manifest(target)
        previous_files = {item["file"]: item for item in previous.get("lists", [])}
        tmp = self.lists_dir / f".{source}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        reports: list[ListReport] = []
        manifest_lists: list[dict[str, Any]] = []
        for number, item in enumerate(imported):
            result = item.result
            report = ListReport(
                name=item.name, file=item.file, accepted=len(result.entries),
                rejected=result.rejected_count, ignored=result.ignored_count,
                mapped_to=list(categories.categories_for_list.get(item.name, ())),
                refused=item.refused,
                examples=[{"line": r.line, "text": r.text, "reason": r.reason}
                          for r in result.rejected_examples],
            )
            reports.append(report)
            staged_name = f"{number:04d}.tsv"
            if item.refused is not None or not result.entries:
                old = previous_files.get(item.file)
                if old is not None and (target / old["staged"]).is_file():
                    shutil.copy2(target / old["staged"], tmp / staged_name)
                    manifest_lists.append({**old, "staged": staged_name, "kept_previous": True})
                continue
            with (tmp / staged_name).open("w", encoding="utf-8") as out:
                out.writelines(f"{'d' if e.kind is EntryKind.DOMAIN else 'u'}\t{e.value}\t{e.line}\n"
                               for e in result.entries)
            manifest_lists.append({"name": item.name, "file": item.file, "staged": staged_name,
                                   "entries": len(result.entries),
                                   "rejected": result.rejected_count})
        manifest = {"source": source, "origin": origin, "imported_at": time.time(),
                    "lists": manifest_lists}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        old_dir = self.lists_dir / f".{source}.old-{os.getpid()}"
        if target.exists():
            target.rename(old_dir)
        tmp.rename(target)
        if old_dir.exists():
            shutil.rmtree(old_dir)
        return reports

    @staticmethod
    def _read_manifest(directory: Path) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def sources(self) -> list[dict[str, Any]]:
        """Every staged source's manifest."""
        if not self.lists_dir.is_dir():
            return []
        found = []
        for directory in sorted(self.lists_dir.iterdir()):
            if directory.is_dir() and not directory.name.startswith("."):
                manifest = self._read_manifest(directory)
                if manifest:
                    found.append(manifest)
        return found

    def _staged_entries(self, list_ids: dict[tuple[str, str], int]
                        ) -> Iterator[tuple[int, EntryKind, str, int]]:
        for manifest in self.sources():
            directory = self.lists_dir / manifest["source"]
            for item in manifest["lists"]:
                list_id = list_ids.get((manifest["source"], item["file"]))
                if list_id is None:
                    continue
                with (directory / item["staged"]).open(encoding="utf-8") as fh:
                    for row in fh:
                        kind, value, line = row.rstrip("\n").split("\t")
                        yield (list_id, EntryKind.DOMAIN if kind == "d" else EntryKind.URL,
                               value, int(line))

    # -- compiling ---------------------------------------------------------------------------
    def compile(self, categories: CategorySet) -> tuple[str, DomainIndex, list[str]]:
        """Compile every staged list that a category uses into a new current snapshot.

        Returns the version, the index, and the names of staged lists no category uses.
        """
        lists: list[ListInfo] = []
        list_ids: dict[tuple[str, str], int] = {}
        unmapped: set[str] = set()
        for manifest in self.sources():
            for item in manifest["lists"]:
                if item["name"] not in categories.categories_for_list:
                    unmapped.add(item["name"])
                    continue
                list_ids[(manifest["source"], item["file"])] = len(lists)
                lists.append(ListInfo(item["name"], f"{manifest['source']}/{item['file']}"))
        index = build_index(lists, self._staged_entries(list_ids))
        # Unique and in time order, even for several compiles within one second.
        now = time.time_ns()
        version = (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
                   + f".{now % 10**9:09d}Z-{os.getpid() % 10000:04d}")
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshots_dir / f".{version}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_index(index, tmp, {"version": version, "created_at": time.time(),
                                "definitions_digest": categories.digest})
        # Prove the files load before anything points at them.
        try:
            load_index(tmp)
        except IndexLoadError as exc:
            shutil.rmtree(tmp)
            raise SnapshotError(f"the compiled snapshot does not load: {exc}") from exc
        final = self.snapshots_dir / version
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        current_tmp = self.snapshots_dir / ".CURRENT.tmp"
        current_tmp.write_text(version + "\n")
        current_tmp.replace(self.snapshots_dir / "CURRENT")
        self._prune(keep=version)
        return version, index, sorted(unmapped)

    def _prune(self, keep: str) -> None:
        versions = sorted(p for p in self.snapshots_dir.iterdir()
                          if p.is_dir() and not p.name.startswith("."))
        for old in versions[:-KEEP_SNAPSHOTS]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def import_path(self, path: Path, categories: CategorySet, *, source: str | None = None,
                    list_name: str | None = None, fmt: str | None = None,
                    origin: str | None = None) -> ImportReport:
        """Stage the lists in ``path`` (a squidGuard tree or tarball, or one list file) as
        ``source`` and compile a new snapshot: what ``esafety lists import`` and the admin
        UI's set-up both do. Raises ImportError_ (not a list source) or SnapshotError."""
        chosen = ListFormat(fmt) if fmt and fmt != "squidguard" else None
        imported = read_source(path, list_name=list_name, fmt=chosen)
        if source is None:
            # One source per file or tree: a shared default would make each import of another
            # file silently drop the lists imported from the previous one.
            source = path.name.split(".")[0] if path.is_file() else path.resolve().name
        reports = self.stage(source, imported, origin or str(path), categories)
        version, index, unmapped = self.compile(categories)
        return ImportReport(source, reports, version, index.host_count, index.url_count, unmapped)

    def categories_without_lists(self, categories: CategorySet) -> list[str]:
        """Ids of the categories that name block lists of which none is imported (they have
        only their built-in entries)."""
        imported = {item["name"] for manifest in self.sources()
                    for item in manifest.get("lists", []) if item.get("entries", 0) > 0}
        return [category.id for category in categories.values()
                if category.lists and not imported.intersection(category.lists)]

    # -- loading -----------------------------------------------------------------------------
    def current_version(self) -> str | None:
        try:
            return (self.snapshots_dir / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def load_current(self) -> tuple[str, DomainIndex, dict[str, Any]] | None:
        """The current snapshot, falling back to the newest older one that loads.

        Returns None when no snapshot has been compiled yet; raises SnapshotError when
        snapshots exist but none loads.
        """
        if not self.snapshots_dir.is_dir():
            return None
        current = self.current_version()
        candidates = sorted((p.name for p in self.snapshots_dir.iterdir()
                             if p.is_dir() and not p.name.startswith(".")), reverse=True)
        if current in candidates:
            candidates.remove(current)
            candidates.insert(0, current)
        if not candidates:
            return None
        errors = []
        for version in candidates:
            try:
                index, meta = load_index(self.snapshots_dir / version)
                return version, index, meta
            except IndexLoadError as exc:
                errors.append(f"{version}: {exc}")
        raise SnapshotError("no snapshot loads: " + "; ".join(errors))
