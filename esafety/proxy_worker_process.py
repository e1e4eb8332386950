"""One proxy worker: what ``esafety proxy --workers 1`` runs, and the entry point of each
worker a supervisor starts (``esafety up``, ``esafety proxy --workers N``). It imports the
proxy's packages only, never the admin service's."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deployment.event_loop import EventLoopError, chosen_event_loop, event_loop_runner
from deployment.instance import Instance
from esafety.service_entry import add_proxy_options, run_service
from proxy_addons.runner import WorkerSettings, run_worker

EXIT_USAGE = 2


def mitm_options(items: Sequence[str]) -> dict[str, str]:
    """``--mitm-option KEY=VALUE`` items as a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"esafety: --mitm-option needs KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def status_listen(args: argparse.Namespace, instance: Instance) -> str | None:
    value: str = args.status_listen or str(instance.config.listen.proxy_status)
    return None if value == "off" else value


def run_worker_process(args: argparse.Namespace, instance: Instance) -> int:
    """Run one worker on the event loop ``ESAFETY_EVENT_LOOP`` names (checked first: a bad
    choice is one message and exit 2)."""
    try:
        run_loop = event_loop_runner(chosen_event_loop(os.environ))
    except EventLoopError as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return EXIT_USAGE
    settings = WorkerSettings(
        listen=args.listen or str(instance.config.listen.proxy),
        status_listen=status_listen(args, instance),
        worker=args.worker_id,
        scripts=args.script or (),
        mitm_options=mitm_options(args.mitm_option or []),
        listen_fd=args.listen_fd,
        fast_path=not args.no_fast_path,
    )
    return run_loop(run_worker(instance, settings))


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("proxy", add_proxy_options, run_worker_process, argv)


if __name__ == "__main__":
    sys.exit(main())
