"""The admin service: what ``esafety admin`` runs, and the entry point of the admin process
``esafety up`` starts. It imports the admin service's packages only, never the proxy's."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from admin_api.server import ListenError, listen_address, serve
from deployment.instance import Instance
from esafety.service_entry import add_admin_options, run_service


def run_admin(args: argparse.Namespace, instance: Instance) -> int:
    """Run the admin API; a port in use (or bad --listen) is one line and exit 2."""
    try:
        listen = listen_address(args.listen) if args.listen else instance.config.listen.admin
        serve(instance, listen, args.listen_fd)
    except ListenError as exc:
        sys.stderr.write(f"esafety: admin API: {exc}\n")
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("admin", add_admin_options, run_admin, argv)


if __name__ == "__main__":
    sys.exit(main())
