"""The Pillow photo inspector (``adapters.photos``): what it refuses, what it keeps of a
photo (its pixels, upright) and what it drops (every metadata block). In memory, no I/O."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from PIL import Image, PngImagePlugin

from adapters.photos import PillowPhotoInspector, capture_stamp
from domain.errors import InvalidPhoto, PhotoTooManyPixels, UnsupportedPhoto
from domain.photos import CaptureStamp
from tests.photos import decoded, decompression_bomb, exif_bytes, photo_bytes, picture

INSPECTOR = PillowPhotoInspector(max_pixels=160 * 120)
WHEN = datetime(2026, 3, 2, 9, 15, 30)


def test_the_pixel_limit_is_read_from_the_header_before_decoding() -> None:
    assert INSPECTOR.inspect(photo_bytes("at-limit", size=(160, 120)), "image/png").phash

    with pytest.raises(PhotoTooManyPixels):
        INSPECTOR.inspect(photo_bytes("one-row-more", size=(160, 121)), "image/png")
    with pytest.raises(PhotoTooManyPixels):  # 900 megapixels in a few kilobytes
        PillowPhotoInspector(max_pixels=40_000_000).inspect(decompression_bomb(), "image/png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_photo_cut_short_does_not_decode(fmt: str) -> None:
    whole = photo_bytes("cut", fmt=fmt)
    mime = f"image/{fmt.lower()}"

    with pytest.raises(InvalidPhoto):
        INSPECTOR.inspect(whole[: len(whole) - 40], mime)


def test_bytes_that_decode_as_another_format_than_sniffed_are_refused() -> None:
    with pytest.raises(UnsupportedPhoto):
        INSPECTOR.inspect(photo_bytes("jpeg", fmt="JPEG"), "image/png")
    with pytest.raises(UnsupportedPhoto):
        INSPECTOR.inspect(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/gif")


def test_the_capture_time_and_its_offset_are_read_from_the_exif() -> None:
    with_offset = INSPECTOR.inspect(photo_bytes("a", taken_at=WHEN, offset="-03:30"), "image/png")
    without = INSPECTOR.inspect(photo_bytes("a", fmt="JPEG", taken_at=WHEN), "image/jpeg")
    none = INSPECTOR.inspect(photo_bytes("a"), "image/png")

    assert with_offset.capture == CaptureStamp(WHEN, -210)
    assert without.capture == CaptureStamp(WHEN, None)
    assert none.capture is None


@pytest.mark.parametrize("written", [b"    :  :     :  :  ", b"yesterday", b"2026:13:45 99:00:00"])
def test_a_blank_or_garbled_capture_time_is_no_capture_time(written: bytes) -> None:
    image = picture("garbled")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = written.decode()
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)

    assert capture_stamp(decoded(out.getvalue())) is None


def test_the_stored_copy_keeps_the_pixels_and_drops_every_metadata_block() -> None:
    image = picture("private")
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", "48.8566 N, 2.3522 E")
    text.add_text("XML:com.adobe.xmp", "<x:xmpmeta>GPSLatitude 48.8566</x:xmpmeta>")
    upload = io.BytesIO()
    image.save(upload, "PNG", pnginfo=text, exif=exif_bytes(WHEN, gps=True))

    kept = INSPECTOR.inspect(upload.getvalue(), "image/png").data

    assert decoded(kept).tobytes() == image.tobytes()
    assert decoded(kept).info == {} and not decoded(kept).getexif()
    assert b"48.8566" not in kept and b"TestCam" not in kept


def test_a_jpegs_xmp_and_comment_are_dropped_too() -> None:
    upload = io.BytesIO()
    picture("xmp").save(
        upload, "JPEG", xmp=b"<x:xmpmeta>GPSLatitude 48.8566</x:xmpmeta>", comment=b"home"
    )

    kept = INSPECTOR.inspect(upload.getvalue(), "image/jpeg").data

    assert b"48.8566" not in kept and b"home" not in kept and b"xmpmeta" not in kept


def test_a_palette_photo_with_transparency_keeps_its_transparency() -> None:
    image = picture("palette").convert("P")
    image.info["transparency"] = 0
    upload = io.BytesIO()
    image.save(upload, "PNG", transparency=0)

    kept = decoded(INSPECTOR.inspect(upload.getvalue(), "image/png").data)

    assert kept.mode == "RGBA"


def test_an_old_photo_is_stripped_the_same_way_for_serving() -> None:
    upload = photo_bytes("old", fmt="JPEG", taken_at=WHEN, gps=True)

    served = INSPECTOR.strip(upload, "image/jpeg")

    assert not decoded(served).getexif() and decoded(served).size == decoded(upload).size
