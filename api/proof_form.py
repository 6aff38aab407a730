"""Reading an uploaded proof from the wire (rules §4): the HTTP side of a submission.

The body is read with a cap (``Content-Length`` is not trusted); the form's fields become a
fingerprinted :class:`~domain.proofs.Proof` for the submission service
(``domain.proofs.proof_from_form``: a photo's type recognised from its bytes).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from api.errors import ApiError
from domain.proofs import Proof, proof_from_form
from domain.values import MAX_TEXT_PROOF_CHARS

FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields

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
                        "text": {"type": "string", "maxLength": MAX_TEXT_PROOF_CHARS},
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
                        "text": {"type": "string", "maxLength": MAX_TEXT_PROOF_CHARS},
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
    file = form.get("file")
    photo, declared = None, None
    if isinstance(file, UploadFile):
        photo, declared = await file.read(max_bytes + 1), file.content_type
    text = form.get("text")
    return proof_from_form(
        form.get("proof_type"), text, file is not None, photo, max_bytes, declared
    )


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "proof_too_large", f"proofs are at most {max_bytes} bytes")
