"""How a bench script hands its figures to ``bench/run.py``: one JSON object per call, appended
to the file ``BENCH_RESULT`` names (nothing when it is unset: the script was run by hand)."""

from __future__ import annotations

import json
import os
from typing import Any


def record(name: str, **figures: Any) -> None:
    path = os.environ.get("BENCH_RESULT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, **figures}, default=str) + "\n")
