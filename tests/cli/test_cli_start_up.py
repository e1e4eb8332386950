"""An IT technician's everyday commands (``esafety users``, ``lists``, ``check``) start
without loading the proxy (mitmproxy) or the admin service (aiohttp and its routes, ldap3):
those load only when ``esafety proxy``, ``admin``, ``up``, ``ca`` or ``directory sync`` run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SERVICES_ONLY = ("mitmproxy", "aiohttp.web", "admin_api.app", "admin_api.server",
                 "proxy_addons.runner", "ldap3")

PROBE = """
import json, sys
from esafety.cli import build_parser
build_parser().parse_args(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    return set(json.loads(done.stdout))


def test_everyday_commands_do_not_load_the_services() -> None:
    for argv in (["users", "list"], ["lists", "import", "x.txt"], ["check", "http://a.test/"],
                 ["directory", "sync"]):
        loaded = _loaded(*argv)
        wrong = sorted(m for m in SERVICES_ONLY if m in loaded)
        assert not wrong, f"esafety {' '.join(argv)} loads {wrong}"
    # The probe can see a service module: importing the proxy's handlers' module loads it.
    done = subprocess.run([sys.executable, "-c", "import sys, esafety.proxy_worker_process; "
                           "print('mitmproxy' in sys.modules)"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "True"
