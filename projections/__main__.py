"""``python -m projections run|status|rebuild [NAME]``: the projection worker."""

import sys

from api.cli import main

sys.exit(main(["projections", *sys.argv[1:]]))
