"""Printing an HTML file to PDF with headless Chromium (Debian's ``chromium`` package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PRINT_TIMEOUT_SECONDS = 120


class NoBrowser(Exception):
    """No headless Chromium on this machine (``apt-get install chromium``)."""


def find_chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise NoBrowser("printing to PDF needs headless Chromium: apt-get install chromium")


def print_to_pdf(html: Path, pdf: Path) -> None:
    """Print ``html`` to ``pdf`` as Chromium would on paper (A4/Letter by locale, no header).

    Raises `NoBrowser`, or `subprocess.CalledProcessError` when Chromium fails.
    """
    subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",  # as root (CI, containers) Chromium refuses to start sandboxed
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf.resolve()}",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=PRINT_TIMEOUT_SECONDS,
    )
    if not pdf.exists() or pdf.stat().st_size == 0:
        raise subprocess.CalledProcessError(1, "chromium --print-to-pdf", b"", b"no PDF written")
