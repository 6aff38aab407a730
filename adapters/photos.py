"""Photos decoded with Pillow and fingerprinted with imagehash (the ``PhotoInspector`` port).

Every upload is decoded whole before anything is stored: the header's size is checked
against the pixel limit before a single pixel is decoded (a decompression bomb never
allocates), a file that ends early is refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` is left
off) and the format Pillow finds must be the one the bytes were sniffed as. The copy that is
stored is built from the decoded pixels alone, turned upright by the EXIF orientation: EXIF
(and its GPS position), XMP, comments and text chunks never reach it.
"""

from __future__ import annotations

import io
import re
from datetime import datetime

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from application.photos import InspectedPhoto
from domain.errors import InvalidPhoto, PhotoTooManyPixels, UnsupportedPhoto
from domain.photos import CaptureStamp
from domain.proofs import JPEG, PNG

JPEG_QUALITY = 90
# Pillow's names of what each sniffed type may decode as: a phone's JPEG is often a
# multi-picture file (MPO), whose first picture is the photo.
_FORMATS = {JPEG: ("JPEG", "MPO"), PNG: ("PNG",)}
_SAVE_AS = {JPEG: "JPEG", PNG: "PNG"}
_EXIF_DATETIME = "%Y:%m:%d %H:%M:%S"
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class PillowPhotoInspector:
    """Decodes, strips and fingerprints photos; refuses what does not decode whole."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels

    def inspect(self, data: bytes, mime_type: str) -> InspectedPhoto:
        image = self._decode(data, mime_type)
        try:
            capture = capture_stamp(image)
            clean = _pixels_only(image)
        except Exception as e:  # malformed metadata or pixels, in whatever form
            raise InvalidPhoto(f"the photo could not be read: {e}") from None
        return InspectedPhoto(data=_encode(clean, mime_type), phash=phash(clean), capture=capture)

    def strip(self, data: bytes, mime_type: str) -> bytes:
        return _encode(_pixels_only(self._decode(data, mime_type)), mime_type)

    def _decode(self, data: bytes, mime_type: str) -> Image.Image:
        if mime_type not in _FORMATS:
            raise UnsupportedPhoto("a photo proof must be a JPEG or a PNG")
        try:
            image = Image.open(io.BytesIO(data), formats=list(_FORMATS[mime_type]))
        except UnidentifiedImageError:
            raise UnsupportedPhoto(f"the bytes do not decode as {mime_type}") from None
        except Image.DecompressionBombError:
            raise PhotoTooManyPixels(f"photos are at most {self.max_pixels} pixels") from None
        except Exception as e:  # Pillow reports broken headers with many exception types
            raise InvalidPhoto(f"the photo could not be read: {e}") from None
        width, height = image.size
        if width * height > self.max_pixels:
            raise PhotoTooManyPixels(
                f"the photo is {width}×{height} pixels; at most {self.max_pixels} are allowed"
            )
        try:
            image.load()
        except Exception as e:  # truncated or corrupt data: whatever the decoder raised
            raise InvalidPhoto(f"the photo could not be decoded whole: {e}") from None
        return image


def phash(image: Image.Image) -> str:
    """imagehash's pHash: 64 bits from the DCT of a 32×32 greyscale copy, as 16 hex digits."""
    # Imported on first use: it brings numpy and scipy (about a second to import), which only
    # a process that receives photos needs; workers and the command line never do.
    import imagehash

    return str(imagehash.phash(image))


def capture_stamp(image: Image.Image) -> CaptureStamp | None:
    """EXIF ``DateTimeOriginal`` and ``OffsetTimeOriginal``, if the photo has them."""
    exif = image.getexif().get_ifd(ExifTags.IFD.Exif)
    written = _text(exif.get(ExifTags.Base.DateTimeOriginal))
    try:
        local = datetime.strptime(written, _EXIF_DATETIME)
    except ValueError:
        return None  # absent, blank ("    :  :     :  :  ") or garbled: no capture time
    offset = _OFFSET.match(_text(exif.get(ExifTags.Base.OffsetTimeOriginal)))
    minutes = None
    if offset is not None:
        sign, hours, mins = offset.groups()
        total = int(hours) * 60 + int(mins)
        if total < 24 * 60:
            minutes = -total if sign == "-" else total
    return CaptureStamp(local, minutes)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip().strip("\x00").strip() if isinstance(value, str) else ""


def _pixels_only(image: Image.Image) -> Image.Image:
    """A new image holding only the upright pixels: nothing of the file's metadata."""
    upright = ImageOps.exif_transpose(image)
    if upright.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = upright.mode in ("PA", "RGBa", "La") or "transparency" in upright.info
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    return Image.frombytes(upright.mode, upright.size, upright.tobytes())


def _encode(image: Image.Image, mime_type: str) -> bytes:
    out = io.BytesIO()
    if mime_type == JPEG:
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, _SAVE_AS[mime_type])
    return out.getvalue()
