"""A one-shot process ``esafety up``'s supervisor runs when the set-up page has saved the
centre's settings: the CA made before the centre was named takes the centre's name, unless a
device may already trust it (see :func:`deployment.ca_certificate.name_unoffered_ca`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from deployment.ca_certificate import name_unoffered_ca
from deployment.config import Config
from deployment.instance import Instance
from esafety.service_entry import run_service

log = logging.getLogger("esafety.supervisor")


def name_ca_for_centre(args: argparse.Namespace, instance: Instance) -> int:
    renamed = name_unoffered_ca(instance.data_dir, instance.config.centre_name,
                                Config.centre_name)
    if renamed is not None:
        log.info("the CA is now named for the centre: %s", renamed.subject)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("ca-naming", lambda parser: None, name_ca_for_centre, argv)


if __name__ == "__main__":
    sys.exit(main())
