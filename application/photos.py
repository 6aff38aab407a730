"""Photo proofs before they reach the ledger (rules §4): decoded whole, stripped of their
metadata and fingerprinted (what type a photo is, from its bytes, is ``domain.proofs``).

Decoding is I/O-shaped work on hostile input, so it sits behind the :class:`PhotoInspector`
port (``adapters.photos`` implements it with Pillow and imagehash); the rules that judge what
it finds are the challenge's (``domain.photos``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.photos import CaptureStamp


@dataclass(frozen=True)
class InspectedPhoto:
    """A photo decoded whole: the copy to store (re-encoded in its own format, orientation
    applied, every metadata block left out), its perceptual hash (16 hex digits) and the
    capture time its camera wrote, if any."""

    data: bytes
    phash: str
    capture: CaptureStamp | None


class PhotoInspector(Protocol):
    """Decodes photos safely (an adapter: Pillow)."""

    def inspect(self, data: bytes, mime_type: str) -> InspectedPhoto:
        """Decode ``data`` (already sniffed as ``mime_type``) and prepare its stored copy.

        Raises :class:`~domain.errors.UnsupportedPhoto` when it decodes as another format,
        :class:`~domain.errors.PhotoTooManyPixels` past the pixel limit and
        :class:`~domain.errors.InvalidPhoto` when it does not decode whole.
        """
        ...

    def strip(self, data: bytes, mime_type: str) -> bytes:
        """The stored copy of a photo kept before photos were re-encoded (served so)."""
        ...
