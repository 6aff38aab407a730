"""Real photos for tests, made with Pillow (nothing downloaded): every photo proof must decode.

``photo_bytes(seed)`` is a small picture of soft blobs drawn from ``seed``: the same seed
gives the same bytes (an exact copy), different seeds look unlike each other (their
perceptual hashes are far apart). EXIF is written with ``piexif``: a capture time
(``DateTimeOriginal``, with ``OffsetTimeOriginal`` when an offset is given), a GPS position,
an orientation. ``variant`` makes the copies a cheat would try: re-encoded, resized, cropped.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from datetime import datetime

import piexif
from PIL import Image

# Somewhere with a recognisable position: what must never reach another participant.
GPS_LATITUDE = ((48, 1), (51, 1), (2_400, 100))
GPS_LONGITUDE = ((2, 1), (17, 1), (4_000, 100))


def picture(seed: str, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Soft blobs of colour drawn from ``seed``: a tiny random grid, smoothly enlarged."""
    rng = random.Random(seed)
    grid = Image.new("RGB", (10, 8))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(10 * 8)])
    return grid.resize(size, Image.Resampling.BICUBIC)


def exif_bytes(
    taken_at: datetime | None = None,
    *,
    offset: str | None = None,
    gps: bool = False,
    orientation: int | None = None,
) -> bytes:
    """An EXIF block: the wall-clock ``taken_at`` (its own tzinfo is ignored: EXIF has
    none), ``offset`` such as ``"+02:00"``, a GPS position, an orientation."""
    zeroth: dict[int, object] = {piexif.ImageIFD.Make: b"TestCam"}
    exif: dict[int, object] = {}
    gps_ifd: dict[int, object] = {}
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    if taken_at is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = taken_at.strftime("%Y:%m:%d %H:%M:%S").encode()
        if offset is not None:
            exif[piexif.ExifIFD.OffsetTimeOriginal] = offset.encode()
    if gps:
        gps_ifd = {
            piexif.GPSIFD.GPSLatitudeRef: b"N",
            piexif.GPSIFD.GPSLatitude: GPS_LATITUDE,
            piexif.GPSIFD.GPSLongitudeRef: b"E",
            piexif.GPSIFD.GPSLongitude: GPS_LONGITUDE,
        }
    return bytes(piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps_ifd}))


def encode(
    image: Image.Image, fmt: str = "PNG", exif: bytes | None = None, **options: object
) -> bytes:
    out = io.BytesIO()
    if exif is not None:
        options["exif"] = exif
    image.save(out, fmt, **options)
    return out.getvalue()


def photo_bytes(
    seed: str,
    *,
    fmt: str = "PNG",
    taken_at: datetime | None = None,
    offset: str | None = None,
    gps: bool = False,
    size: tuple[int, int] = (160, 120),
) -> bytes:
    """A real PNG (or JPEG) of ``picture(seed)``, with EXIF when a capture time or GPS is
    asked for."""
    exif = exif_bytes(taken_at, offset=offset, gps=gps) if taken_at or gps else None
    return encode(picture(seed, size), fmt, exif)


def variant(data: bytes, how: str) -> bytes:
    """A copy of a photo a cheat might submit again: ``reencoded`` (a JPEG at another
    quality), ``resized`` (to 60 %) or ``cropped`` (1.5 % off each edge)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    if how == "reencoded":
        return encode(image, "JPEG", quality=70)
    if how == "resized":
        return encode(image.resize((width * 3 // 5, height * 3 // 5)), "PNG")
    if how == "cropped":
        dx, dy = max(1, width * 3 // 200), max(1, height * 3 // 200)
        return encode(image.crop((dx, dy, width - dx, height - dy)), "PNG")
    raise ValueError(how)


def decompression_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG of a few kilobytes that claims ``width × height`` grey pixels (the first rows
    really compressed), as a decompression bomb does."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width + 1) * 64), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
