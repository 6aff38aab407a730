"""Photo proofs before they reach the ledger (rules §4): recognised from their bytes,
decoded whole, stripped of their metadata and fingerprinted.

Decoding is I/O-shaped work on hostile input, so it sits behind the :class:`PhotoInspector`
port (``adapters.photos`` implements it with Pillow and imagehash); the rules that judge what
it finds are the challenge's (``domain.photos``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.errors import UnsupportedPhoto
from domain.photos import CaptureStamp

JPEG, PNG = "image/jpeg", "image/png"
MAGIC = ((b"\xff\xd8\xff", JPEG), (b"\x89PNG\r\n\x1a\n", PNG))

# What clients call the two types; any other declared type must match the bytes exactly.
_ALIASES = {"image/jpg": JPEG, "image/pjpeg": JPEG, "image/x-png": PNG}
# A client that does not know the type says so; the bytes then decide alone.
_UNDECLARED = frozenset({"", "application/octet-stream"})


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


def sniff(data: bytes) -> str | None:
    """The photo type the bytes start with (JPEG or PNG), or None."""
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return mime
    return None


def photo_type(data: bytes, declared: str | None) -> str:
    """The MIME type of an uploaded photo, recognised from its bytes (rules §4).

    Not a JPEG or PNG, or declared as another type than the bytes are: 415.
    """
    sniffed = sniff(data)
    if sniffed is None:
        raise UnsupportedPhoto("a photo proof must be a JPEG or a PNG")
    said = (declared or "").split(";")[0].strip().lower()
    said = _ALIASES.get(said, said)
    if said not in _UNDECLARED and said != sniffed:
        raise UnsupportedPhoto(f"the file was sent as {said} but its bytes are {sniffed}")
    return sniffed
