"""``esafety proxy``, ``esafety up`` and ``esafety ca``: subcommands of the proxy."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployment.ca_certificate import CAError
from deployment.event_loop import EventLoopError, chosen_event_loop, event_loop_runner
from deployment.instance import Instance
from esafety.supervisor import DEFAULTS, run_all, run_proxy_workers
from proxy_addons.certificate_authority import describe_ca, export_ca, load_or_create_ca
from proxy_addons.runner import WorkerSettings, run_worker


def _parse_mitm_options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"esafety: --mitm-option needs KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def cmd_proxy(args: argparse.Namespace, instance: Instance) -> int:
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise SystemExit("esafety: --workers must be at least 1")
    try:  # checked here, so a bad choice stops the supervisor too, before any worker starts
        run_loop = event_loop_runner(chosen_event_loop(os.environ))
    except EventLoopError as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return 2
    mitm_options = _parse_mitm_options(args.mitm_option or [])
    listen = args.listen or str(instance.config.listen.proxy)
    if workers > 1:

        return run_proxy_workers(instance, workers, listen=listen, status_listen=
                                 _status_listen(args, instance),
                                 extra=worker_passthrough(args), listen_fd=args.listen_fd)
    settings = WorkerSettings(
        listen=listen,
        status_listen=_status_listen(args, instance),
        worker=args.worker_id,
        scripts=args.script or (),
        mitm_options=mitm_options,
        listen_fd=args.listen_fd,
        fast_path=not args.no_fast_path,
    )
    return run_loop(run_worker(instance, settings))


def _status_listen(args: argparse.Namespace, instance: Instance) -> str | None:
    value: str = args.status_listen or str(instance.config.listen.proxy_status)
    return None if value == "off" else value


def worker_passthrough(args: argparse.Namespace) -> list[str]:
    """The ``esafety proxy`` options every worker gets as they were given. The supervisor
    adds --listen, --listen-fd, --status-listen, --worker-id, --data-dir and --config itself,
    and hands the Redis URL (--redis-url, ESAFETY_REDIS_URL or the config's) to each worker
    in ESAFETY_REDIS_URL, so no password lands on a command line."""
    extra: list[str] = []
    for script in args.script or ():
        extra += ["--script", script]
    for option in args.mitm_option or ():
        extra += ["--mitm-option", option]
    if args.no_fast_path:
        extra.append("--no-fast-path")
    return extra


def cmd_ca_export(args: argparse.Namespace, instance: Instance) -> int:
    try:
        written = export_ca(instance, Path(args.out) if args.out else None, args.format)
    except (CAError, OSError) as exc:
        sys.stderr.write(f"esafety: the certificate authority: {exc}\n")
        return 1
    if args.out:
        sys.stdout.write(f"wrote {written}\n")
    return 0


def cmd_ca_show(args: argparse.Namespace, instance: Instance) -> int:
    try:
        sys.stdout.write(describe_ca(load_or_create_ca(instance)))
    except (CAError, OSError) as exc:
        sys.stderr.write(f"esafety: the certificate authority: {exc}\n")
        return 1
    return 0


def cmd_up(args: argparse.Namespace, instance: Instance) -> int:

    return run_all(instance, proxy_listen=args.proxy_listen, admin_listen=args.admin_listen)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the proxy's subcommands (handlers import mitmproxy lazily)."""
    proxy = sub.add_parser("proxy", help="run the filtering proxy")
    proxy.add_argument("--listen", help=f"HOST:PORT to listen on (default {DEFAULTS.proxy})")
    proxy.add_argument("--status-listen",
                       help="HOST:PORT for /healthz, /readyz and /metrics, +1 per worker "
                            f"('off' to disable; default {DEFAULTS.proxy_status})")
    proxy.add_argument("--workers", type=int, metavar="N",
                       help="worker processes sharing the port (default: one per core)")
    proxy.add_argument("--worker-id", default="0", help=argparse.SUPPRESS)
    proxy.add_argument("--listen-fd", type=int, metavar="FD",
                       help="accept on this inherited listening socket instead of binding "
                            "--listen (as a supervisor such as systemd or esafety up passes)")
    proxy.add_argument("--no-fast-path", action="store_true",
                       help="let mitmproxy handle every tunnel (slower; for troubleshooting)")
    proxy.add_argument("--script", action="append", metavar="FILE",
                       help="extra mitmproxy addon script, as mitmdump -s (repeatable)")
    proxy.add_argument("--mitm-option", action="append", metavar="KEY=VALUE",
                       help="set a mitmproxy option, as mitmdump --set (repeatable)")
    proxy.set_defaults(handler=cmd_proxy)

    up = sub.add_parser("up", help="start everything: Redis (embedded if none is configured), "
                                   "the proxy and the admin API")
    up.add_argument("--proxy-listen", help=f"HOST:PORT for the proxy (default {DEFAULTS.proxy})")
    up.add_argument("--admin-listen",
                    help=f"HOST:PORT for the admin API (default {DEFAULTS.admin})")
    up.set_defaults(handler=cmd_up)

    ca = sub.add_parser("ca", help="the proxy's certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    export = ca_sub.add_parser("export", help="write the CA certificate for devices to trust")
    export.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    export.add_argument("--format", choices=["pem", "der"], default="pem",
                        help="PEM (text; most systems) or DER (binary; some Windows and "
                             "Android tools) (default: pem)")
    export.set_defaults(handler=cmd_ca_export)
    show = ca_sub.add_parser("show", help="print the CA's subject and fingerprints, to compare "
                             "with what a device shows")
    show.set_defaults(handler=cmd_ca_show)
