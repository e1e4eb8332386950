"""The ``esafety`` command: a thin layer over the packages.

Exit codes: 0 success (``check``: allowed), 1 ``check`` blocked or a command that did its
work but found problems (e.g. refused list files), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from redis.asyncio import Redis

from categories.decision import Decision
from categories.definitions import load_definitions
from categories.list_formats import ListFormat
from categories.list_import import ImportError_
from categories.policy import PolicyError
from categories.profiles import ANY_HOUR, NetworkHours
from categories.snapshot import ImportReport, SnapshotError
from categories.validated_yaml import ValidationFailed
from deployment.config import build_policy
from deployment.instance import Instance, NoStoreError
from deployment.json_logging import configure_logging
from deployment.listen_address import ListenAddress
from esafety import admin_commands, directory_commands, proxy_commands, redis_commands
from esafety.admin_store import admin_client
from esafety.backup import BackupError, backup, restore
from esafety.known_names import UnknownNameError, known_group
from esafety.service_entry import add_global_options
from store.keys import Keys
from store.policy_state import bump_version as bump_policy_version

EXIT_OK, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Instance], int]

SERVICE_NAMES = {"up": "supervisor"}
"""The ``service`` field of a command's log lines, where it is not the command's name."""


class UsageError(Exception):
    pass


def _parse_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--at {text!r} is not an ISO time like 2026-11-23T12:15") from exc
    return value


def _iter_targets(urls: Sequence[str], stdin: TextIO) -> Iterator[str]:
    for url in urls:
        if url == "-":
            for line in stdin:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line
        else:
            yield url


def _decision_line(url: str, decision: Decision) -> str:
    where = ""
    if decision.matched:
        where = f" matched={decision.matched}"
        if decision.source:
            where += f" ({decision.source}{':' + str(decision.line) if decision.line else ''})"
    category = f" category={decision.category}" if decision.category else ""
    return (f"{decision.action.value.upper():5} {url}{category} rule={decision.rule.value}"
            f"{where}\n      {decision.reason}\n")


def _network_hours(instance: Instance, name: str | None) -> NetworkHours:
    """The hours of the network named ``name`` (``--network``); none: only the group's."""
    if name is None:
        return ANY_HOUR
    networks = {n.name: n for n in instance.config.networks if n.name}
    network = networks.get(name)
    if network is None:
        known = ", ".join(sorted(networks)) or "none has a name in the config"
        raise UsageError(f"--network {name!r} is not a named network ({known})")
    return NetworkHours(name, network.online_during)


def cmd_check(args: argparse.Namespace, instance: Instance) -> int:
    at = _parse_at(args.at)
    policy = instance.load_policy()
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=policy.schedule.timezone)
    group = known_group(instance.config, args.group) if args.group is not None else None
    hours = _network_hours(instance, args.network)
    out = sys.stdout
    write = out.write
    count = blocked = 0
    for url in _iter_targets(args.urls, sys.stdin):
        decision = policy.decide(url, user=args.user, group=group, at=at or datetime.now(UTC),
                                 hours=hours)
        count += 1
        blocked += decision.blocked
        if args.json:
            record = decision.to_dict()
            record["url"] = url
            write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            write(_decision_line(url, decision))
    out.flush()
    if count == 0:
        raise UsageError("no URLs given")
    return EXIT_BLOCKED if blocked else EXIT_OK


def _print_import(report: ImportReport, out: TextIO) -> None:
    out.write(f"source {report.source}: snapshot {report.snapshot_version}, "
              f"{report.host_entries} host keys, {report.url_entries} URL keys\n")
    out.write(f"{'list':24} {'file':32} {'accepted':>9} {'rejected':>9}  feeds\n")
    for item in report.lists:
        feeds = ",".join(item.mapped_to) or "(not used by any category)"
        out.write(f"{item.name[:24]:24} {item.file[:32]:32} {item.accepted:9} {item.rejected:9}  "
                  f"{feeds}\n")
        if item.refused:
            out.write(f"    REFUSED: {item.refused}; the previous copy is kept\n")
        for example in item.examples[:3] if item.rejected else []:
            out.write(f"    line {example['line']}: {example['reason']}: {example['text'][:80]}\n")
    out.write(f"rejected lines in total: {report.rejected_total}\n")
    if report.unmapped_lists:
        out.write("imported but not used by any category: "
                  + ", ".join(report.unmapped_lists) + "\n")


def import_path(instance: Instance, path: Path, source: str | None, list_name: str | None,
                fmt: str | None, origin: str | None = None) -> ImportReport:
    instance.ensure_data_dir()
    return instance.list_store.import_path(path, load_definitions(), source=source,
                                           list_name=list_name, fmt=fmt, origin=origin)


def cmd_lists_import(args: argparse.Namespace, instance: Instance) -> int:
    report = import_path(instance, Path(args.path), args.source, args.list, args.format)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        _print_import(report, sys.stdout)
    return EXIT_BLOCKED if any(r.refused for r in report.lists) else EXIT_OK


def cmd_lists_update(args: argparse.Namespace, instance: Instance) -> int:
    sources = instance.config.list_sources
    if not sources:
        raise UsageError("no list sources configured (lists.sources in the config file); "
                         "import files with esafety lists import PATH")
    unknown = [name for name in args.name if name not in {s.name for s in sources}]
    if unknown:
        raise UsageError(f"unknown list source {unknown[0]!r}; configured sources: "
                         + ", ".join(s.name for s in sources))
    if args.name:
        sources = tuple(s for s in sources if s.name in args.name)
    status = EXIT_OK
    for source in sources:
        suffix = ".tar.gz" if source.url.endswith((".tar.gz", ".tgz")) else ".txt"
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"{source.name}{suffix}"
            try:
                # The config schema admits only http, https and file URLs.
                request = urllib.request.urlopen(source.url, timeout=args.timeout)  # noqa: S310
                with request as response, target.open("wb") as fh:
                    shutil.copyfileobj(response, fh)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"esafety: cannot download {source.name} from {source.url}: "
                                 f"{exc}; the lists already imported are kept\n")
                status = EXIT_BLOCKED
                continue
            try:
                report = import_path(instance, target, source.name, source.list, source.format,
                                     origin=source.url)
            except (ImportError_, SnapshotError) as exc:
                sys.stderr.write(f"esafety: {source.name}: {exc}; the lists already imported "
                                 "are kept\n")
                status = EXIT_BLOCKED
                continue
        if args.json:
            sys.stdout.write(json.dumps(report.to_dict()) + "\n")
        else:
            _print_import(report, sys.stdout)
        if any(r.refused for r in report.lists):
            status = EXIT_BLOCKED
    return status


def cmd_lists_status(args: argparse.Namespace, instance: Instance) -> int:
    store = instance.list_store
    loaded = store.load_current()
    status: dict[str, Any] = {
        "data_dir": str(instance.data_dir),
        "snapshot_version": loaded[0] if loaded else None,
        "host_entries": loaded[1].host_count if loaded else 0,
        "url_entries": loaded[1].url_count if loaded else 0,
        "sources": [
            {"source": m["source"], "origin": m.get("origin"),
             "imported_at": datetime.fromtimestamp(m["imported_at"], UTC).isoformat(),
             "lists": len(m["lists"]), "entries": sum(i.get("entries", 0) for i in m["lists"])}
            for m in store.sources()
        ],
    }
    if args.json:
        sys.stdout.write(json.dumps(status) + "\n")
        return EXIT_OK
    sys.stdout.write(f"data directory: {status['data_dir']}\n"
                     f"snapshot: {status['snapshot_version'] or 'none (run esafety lists import)'}"
                     f" with {status['host_entries']} host and {status['url_entries']} URL keys\n")
    if not status["sources"]:
        sys.stdout.write("no block lists imported yet: import some with esafety lists import "
                         "PATH (a squidGuard/UT1 folder or .tar.gz, or one list file)\n")
    for source in status["sources"]:
        sys.stdout.write(f"  {source['source']}: {source['entries']} entries in {source['lists']} "
                         f"lists, imported {source['imported_at']} from {source['origin']}\n")
    return EXIT_OK


def cmd_categories(args: argparse.Namespace, instance: Instance) -> int:
    categories = load_definitions()
    rows: list[dict[str, Any]] = []
    for category in categories.values():
        rows.append({"id": category.id, "title": category.title, "kind": category.kind.value,
                     "uksic": category.uksic, "severity": category.severity.value,
                     "safeguarding_alert": category.safeguarding_alert,
                     "overridable": category.overridable, "illegal": category.illegal,
                     "lists": list(category.lists), "curated_entries": len(category.entries)})
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return EXIT_OK
    for row in rows:
        flags = [f for f in ("illegal", "safeguarding_alert") if row[f]]
        if not row["overridable"]:
            flags.append("locked")
        sys.stdout.write(f"{row['id']:22} {row['kind']:8} {row['severity']:9} "
                         f"{','.join(flags):30} lists: {','.join(row['lists']) or '-'}\n")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace, instance: Instance) -> int:
    # Instance.resolve already validated the file; build the policy to check the groups
    # against the categories too.
    build_policy(instance.config, load_definitions())
    where = instance.config.path or "built-in defaults"
    sys.stdout.write(f"{where}: OK\n")
    return EXIT_OK


def _store_client(instance: Instance) -> Redis:
    try:
        return admin_client(instance)
    except NoStoreError as exc:
        raise UsageError(str(exc)) from exc


def cmd_backup(args: argparse.Namespace, instance: Instance) -> int:
    async def run() -> int:
        client = _store_client(instance)
        try:
            summary = await backup(client, instance.config.redis_prefix, Path(args.out),
                                   include_hits=args.include_hits)
        except BackupError as exc:
            raise UsageError(str(exc)) from exc
        finally:
            await client.aclose()
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(summary.by_type.items()))
        sys.stdout.write(f"backed up {summary.keys} keys ({kinds}) to {args.out}; "
                         f"{summary.skipped} left out (tokens, markers"
                         f"{'' if args.include_hits else ', raw hits'})\n")
        return EXIT_OK

    return asyncio.run(run())


def cmd_restore(args: argparse.Namespace, instance: Instance) -> int:
    async def run() -> int:
        client = _store_client(instance)
        try:
            summary = await restore(client, instance.config.redis_prefix, Path(args.file),
                                    force=args.force)

            # (a backup from an older release has no record indexes: the admin builds them
            # when it starts)
            await bump_policy_version(client, Keys(instance.config.redis_prefix))
        except BackupError as exc:
            raise UsageError(str(exc)) from exc
        finally:
            await client.aclose()
        sys.stdout.write(f"restored {summary.keys} keys from {args.file}\n")
        return EXIT_OK

    return asyncio.run(run())


def _local_url(listen: ListenAddress, path: str) -> str:
    host = listen.connect_host if listen.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host if ':' not in host else f'[{host}]'}:{listen.port}{path}"


def cmd_healthcheck(args: argparse.Namespace, instance: Instance) -> int:
    """Exit 0 when the local service answers /healthz (for container health checks)."""
    listen = (instance.config.listen.proxy_status if args.service == "proxy"
              else instance.config.listen.admin)
    running = instance.running_up() if args.url is None else None
    if running is not None:  # the addresses esafety up really listens on
        endpoint = running.proxy_status if args.service == "proxy" else running.admin
        if endpoint is not None:
            listen = ListenAddress(endpoint.local_host, endpoint.port)
    url = args.url or _local_url(listen, "/healthz")
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:  # noqa: S310
            healthy = response.status == 200
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"esafety: {args.service} is not healthy at {url}: {exc}\n")
        return EXIT_BLOCKED
    sys.stdout.write(f"{args.service}: {'healthy' if healthy else 'unhealthy'}\n")
    return EXIT_OK if healthy else EXIT_BLOCKED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esafety", description="esafety: the web filter's command line.",
        epilog="Run esafety COMMAND --help for a command's options. While esafety up runs, "
               "every other command on the same data directory finds its Redis and config "
               "by itself.")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="explain the decision for URLs ('-' reads stdin)")
    check.add_argument("urls", nargs="+", metavar="URL",
                       help="URLs to decide on; '-' reads one per line from standard input")
    check.add_argument("--user", help="the user name to decide for (per-user overrides)")
    check.add_argument("--group", metavar="GROUP",
                       help="the filtering group to decide for (learner, staff, guest or one "
                            "from the config; default: the unidentified group)")
    check.add_argument("--at", help="ISO time to decide at, in the centre's time zone unless "
                                    "it names one (default: now)")
    check.add_argument("--network", metavar="NAME",
                       help="decide for a request from this named network (its access "
                            "windows apply as well as the group's)")
    check.add_argument("--json", action="store_true", help="one JSON object per URL")
    check.set_defaults(handler=cmd_check)

    lists = sub.add_parser("lists", help="import and update block lists")
    lists_sub = lists.add_subparsers(dest="lists_command", required=True, metavar="ACTION")
    imp = lists_sub.add_parser("import", help="import a squidGuard tree, tarball or list file")
    imp.add_argument("path", metavar="PATH",
                     help="a squidGuard/UT1 folder, a .tar.gz of one, or one list file")
    imp.add_argument("--source", help="name for this source (default: from the path)")
    imp.add_argument("--list", help="list category of a flat file (default: its file name)")
    imp.add_argument("--format", choices=["squidguard", *[f.value for f in ListFormat]],
                     help="the list format (default: detected from the contents)")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.set_defaults(handler=cmd_lists_import)
    upd = lists_sub.add_parser("update", help="download and import the configured sources")
    upd.add_argument("name", nargs="*", metavar="NAME",
                     help="configured sources to update (default: all of lists.sources)")
    upd.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                     help="give up on a download after this long (default: 120)")
    upd.add_argument("--json", action="store_true", help="print each import report as JSON")
    upd.set_defaults(handler=cmd_lists_update)
    st = lists_sub.add_parser("status", help="show imported sources and the snapshot")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(handler=cmd_lists_status)

    cats = sub.add_parser("categories", help="list the category definitions")
    cats.add_argument("--json", action="store_true", help="print the definitions as JSON")
    cats.set_defaults(handler=cmd_categories)

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = config_sub.add_parser("check", help="validate the config file without starting anything")
    cc.set_defaults(handler=cmd_config_check)

    bk = sub.add_parser("backup", help="back up Redis data (users, requests, overrides, audit)")
    bk.add_argument("--out", required=True, help="backup file to write (gzip JSON lines)")
    bk.add_argument("--include-hits", action="store_true",
                    help="also back up raw hits (personal data: mind the retention policy)")
    bk.set_defaults(handler=cmd_backup)
    rs = sub.add_parser("restore", help="restore a backup into an empty Redis")
    rs.add_argument("file", metavar="FILE", help="a backup written by esafety backup")
    rs.add_argument("--force", action="store_true", help="overwrite keys that already exist")
    rs.set_defaults(handler=cmd_restore)

    health = sub.add_parser("healthcheck", help="check that a local service answers /healthz")
    health.add_argument("service", choices=["proxy", "admin"],
                        help="which service to ask (proxy: its status port)")
    health.add_argument("--url", help="the /healthz URL (default: from the config)")
    health.add_argument("--timeout", type=float, default=4.0, metavar="SECONDS",
                        help="give up after this long (default: 4)")
    health.set_defaults(handler=cmd_healthcheck)

    proxy_commands.add_parsers(sub)
    admin_commands.add_parsers(sub)
    redis_commands.add_parsers(sub)
    directory_commands.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        instance = Instance.resolve(args.config, args.data_dir, args.redis_url)
        configure_logging(SERVICE_NAMES.get(args.command, args.command),
                          instance.config.log_level, instance.config.log_format)
        handler: Handler = args.handler
        return handler(args, instance)
    except ValidationFailed as exc:
        sys.stderr.write(f"esafety: configuration error:\n{exc}\n")
        return EXIT_USAGE
    except (UsageError, PolicyError, UnknownNameError) as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return EXIT_USAGE
    except (ImportError_, SnapshotError) as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
