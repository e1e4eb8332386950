"""``esafety proxy``, ``esafety up`` and ``esafety ca``: subcommands of the proxy.

mitmproxy and the services load inside the handlers, when one of these commands runs: the
other commands (``esafety users``, ``lists``, ``check``) start without them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployment.ca_certificate import CAError
from deployment.event_loop import EventLoopError, chosen_event_loop
from deployment.instance import Instance
from esafety.service_entry import DEFAULTS, add_proxy_options


def cmd_proxy(args: argparse.Namespace, instance: Instance) -> int:
    from esafety.proxy_worker_process import mitm_options, run_worker_process, status_listen
    from esafety.service_up import run_proxy_workers
    from proxy_addons.certificate_authority import load_or_create_ca
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise SystemExit("esafety: --workers must be at least 1")
    try:  # checked here, so a bad choice stops the supervisor too, before any worker starts
        chosen_event_loop(os.environ)
    except EventLoopError as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return 2
    mitm_options(args.mitm_option or [])  # a bad one stops here, not in every worker
    if workers > 1:
        listen = args.listen or str(instance.config.listen.proxy)
        load_or_create_ca(instance)  # once, before the workers race to create it
        return run_proxy_workers(instance, workers, listen=listen,
                                 status_listen=status_listen(args, instance),
                                 extra=worker_passthrough(args), listen_fd=args.listen_fd)
    return run_worker_process(args, instance)


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
    from proxy_addons.certificate_authority import export_ca
    try:
        written = export_ca(instance, Path(args.out) if args.out else None, args.format)
    except (CAError, OSError) as exc:
        sys.stderr.write(f"esafety: the certificate authority: {exc}\n")
        return 1
    if args.out:
        sys.stdout.write(f"wrote {written}\n")
    return 0


def cmd_ca_show(args: argparse.Namespace, instance: Instance) -> int:
    from proxy_addons.certificate_authority import describe_ca, load_or_create_ca
    try:
        sys.stdout.write(describe_ca(load_or_create_ca(instance)))
    except (CAError, OSError) as exc:
        sys.stderr.write(f"esafety: the certificate authority: {exc}\n")
        return 1
    return 0


def cmd_up(args: argparse.Namespace, instance: Instance) -> int:
    from esafety.service_up import run_all
    return run_all(instance, proxy_listen=args.proxy_listen, admin_listen=args.admin_listen)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the proxy's subcommands."""
    proxy = sub.add_parser("proxy", help="run the filtering proxy")
    add_proxy_options(proxy)
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
