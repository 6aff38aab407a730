"""``python -m projections.audit verify|report|export|balance ...``: as ``peerpush audit``."""

import sys

from api.cli import main

sys.exit(main(["audit", *sys.argv[1:]]))
