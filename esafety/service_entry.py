"""What the command line and the service processes share: the global options, the options
of the two services a supervisor starts (a proxy worker, the admin service), and how a service
process starts (config, logging, the exit code for a configuration error).

A supervisor's children do not start through :mod:`esafety.cli`, which imports every package,
but through :mod:`esafety.proxy_worker_process` or :mod:`esafety.admin_process`, which import
only their own service's packages (measured with ``bench/proxy.py --workloads
startup_memory``). Their command lines are the same as the CLI's, so either way a child runs
the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from categories.validated_yaml import ValidationFailed
from deployment import VERSION
from deployment.config import ListenSettings
from deployment.instance import Instance
from deployment.json_logging import configure_logging

DEFAULTS = ListenSettings()
"""The built-in listen addresses (their ports are the default for a bare ``HOST``)."""
EXIT_USAGE = 2

ServiceHandler = Callable[[argparse.Namespace, Instance], int]


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"esafety {VERSION}",
                        help="print the version and exit")
    parser.add_argument("--config", metavar="FILE",
                        help="config file (default: $ESAFETY_CONFIG, else the one the running "
                             "esafety up on the data directory uses, else built-in defaults)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="data directory (default: $ESAFETY_DATA_DIR, else data_dir in the "
                             "config, else ~/.local/share/esafety)")
    parser.add_argument("--redis-url", metavar="URL",
                        help="Redis URL, with ?password_file=PATH rather than a password "
                             "(default: $ESAFETY_REDIS_URL, else redis_url in the config, else "
                             "the Redis of the esafety up running on the data directory)")


def add_proxy_options(proxy: argparse.ArgumentParser) -> None:
    """``esafety proxy``'s options (a worker process takes the same)."""
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


def add_admin_options(admin: argparse.ArgumentParser) -> None:
    """``esafety admin``'s options."""
    admin.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default: listen.admin in the config, "
                            f"{DEFAULTS.admin})")
    admin.add_argument("--listen-fd", type=int, metavar="FD",
                       help="accept on this inherited listening socket instead of binding "
                            "--listen (esafety up passes it)")


def run_service(command: str, add_options: Callable[[argparse.ArgumentParser], None],
                handler: ServiceHandler, argv: Sequence[str] | None = None) -> int:
    """Parse ``[global options] COMMAND [options]``, load the config, set up logging and run
    ``handler``; a configuration error is one message and exit 2."""
    parser = argparse.ArgumentParser(prog="esafety")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_options(sub.add_parser(command))
    args = parser.parse_args(argv)
    try:
        instance = Instance.resolve(args.config, args.data_dir, args.redis_url)
        configure_logging(command, instance.config.log_level, instance.config.log_format)
        return handler(args, instance)
    except ValidationFailed as exc:
        sys.stderr.write(f"esafety: configuration error:\n{exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
