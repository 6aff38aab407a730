"""Reading an uploaded proof from the wire (rules §4): the HTTP side of a submission.

The body is read with a cap (``Content-Length`` is not trusted); what comes out is a
fingerprinted :class:`~application.submissions.Proof` for the submission service, a photo's
type recognised from its bytes (:func:`application.photos.photo_type`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from api.errors import ApiError
from application.photos import photo_type
from application.submissions import Proof

MAX_TEXT_CHARS = 10_000
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields
TEXT_MIME = "text/plain; charset=utf-8"

MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["proof_type"],
                    "properties": {
                        "proof_type": {"type": "string", "enum": ["photo", "text"]},
                        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG or PNG, at most 10 MiB (photo proofs); "
                            "its part's Content-Type, if an image type, must match its bytes",
                        },
                    },
                }
            },
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["proof_type", "text"],
                    "properties": {
                        "proof_type": {"type": "string", "enum": ["text"]},
                        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS},
                    },
                }
            },
        },
    }
}


class _TooLarge(Exception):
    pass


async def read_proof(request: Request, max_bytes: int) -> Proof:
    """The form body, read with a cap; 413 past it, 415 for what is not JPEG/PNG.

    ``multipart/form-data`` carries either kind of proof; a text proof may also come as
    ``application/x-www-form-urlencoded``.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        kind: type[MultiPartParser] | type[FormParser] = MultiPartParser
        limits: dict[str, Any] = {"max_files": 1}
    elif content_type.startswith("application/x-www-form-urlencoded"):
        kind, limits = FormParser, {}
    else:
        raise ApiError(415, "unsupported_content_type", "send the proof as multipart/form-data")

    async def capped() -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > max_bytes + FORM_OVERHEAD:
                raise _TooLarge
            yield chunk

    parser = kind(request.headers, capped(), max_fields=2, max_part_size=FORM_OVERHEAD, **limits)
    try:
        form = await parser.parse()
    except _TooLarge:
        raise _too_large(max_bytes) from None
    except MultiPartException as e:
        if "maximum size" in str(e):
            raise _too_large(max_bytes) from None
        raise ApiError(422, "invalid_form", str(e)) from None
    try:
        return await _proof_of(form, max_bytes)
    finally:
        await form.close()


async def _proof_of(form: Any, max_bytes: int) -> Proof:
    proof_type, text, file = form.get("proof_type"), form.get("text"), form.get("file")
    if proof_type not in ("photo", "text"):
        raise ApiError(422, "invalid_proof_type", "proof_type must be photo or text")
    if proof_type == "text":
        if file is not None:
            raise ApiError(422, "unexpected_file", "a text proof has no file")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(422, "missing_text", "a text proof needs text")
        if len(text) > MAX_TEXT_CHARS:
            raise ApiError(413, "proof_too_large", f"text proofs are {MAX_TEXT_CHARS} chars max")
        return Proof("text", text.encode(), TEXT_MIME)
    if text:
        raise ApiError(422, "unexpected_text", "text is for text proofs")
    if not isinstance(file, UploadFile):
        raise ApiError(422, "missing_file", "a photo proof needs a file")
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return Proof("photo", data, photo_type(data, file.content_type))


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "proof_too_large", f"proofs are at most {max_bytes} bytes")
