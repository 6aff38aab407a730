"""What a proof is (rules §4): a text, or a JPEG or PNG photo recognised from its bytes.

A proof arrives as a form (a type, a text, a file); :func:`proof_from_form` says whether it
is one and what it is, before anything is stored or decoded: a text of at most
``MAX_TEXT_PROOF_CHARS`` characters, or a photo of at most the upload limit whose type is the
one its bytes start with (:func:`photo_type`; a declared type must agree). What comes out is a
fingerprinted :class:`Proof`; what the ledger keeps of it is a
:class:`~domain.verification.ProofFacts`. Pure: no decoding (that is the application's
``PhotoInspector``), no storage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from domain.errors import InvalidProof, ProofTooLarge, UnsupportedPhoto
from domain.values import MAX_TEXT_PROOF_CHARS, TEXT_MIME, ProofType, image_type
from domain.verification import ProofFacts

JPEG, PNG = "image/jpeg", "image/png"

# What clients call the two types; any other declared type must match the bytes exactly.
_ALIASES = {"image/jpg": JPEG, "image/pjpeg": JPEG, "image/x-png": PNG}
# A client that does not know the type says so; the bytes then decide alone.
_UNDECLARED = frozenset({"", "application/octet-stream"})


@dataclass(frozen=True)
class Proof:
    """An uploaded proof, read and fingerprinted, not yet stored."""

    proof_type: str
    data: bytes
    mime_type: str
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def facts(self, key: str) -> ProofFacts:
        return ProofFacts(self.proof_type, key, self.mime_type, len(self.data), self.sha256)


def photo_type(data: bytes, declared: str | None) -> str:
    """The MIME type of an uploaded photo, recognised from its bytes (rules §4).

    Not a JPEG or PNG, or declared as another type than the bytes are: 415.
    """
    sniffed = image_type(data)
    if sniffed is None:
        raise UnsupportedPhoto("a photo proof must be a JPEG or a PNG")
    said = (declared or "").split(";")[0].strip().lower()
    said = _ALIASES.get(said, said)
    if said not in _UNDECLARED and said != sniffed:
        raise UnsupportedPhoto(f"the file was sent as {said} but its bytes are {sniffed}")
    return sniffed


def proof_from_form(
    proof_type: object,
    text: object,
    has_file: bool,
    photo: bytes | None,
    max_bytes: int,
    declared: str | None = None,
) -> Proof:
    """The proof a submission form carries: a text of at most ``MAX_TEXT_PROOF_CHARS``
    characters, or a JPEG or PNG photo of at most ``max_bytes`` (``photo`` holds the file's
    first ``max_bytes + 1`` bytes), recognised by its content (and refused when ``declared``
    as another type than its bytes are)."""
    if proof_type not in tuple(ProofType):
        raise InvalidProof("invalid_proof_type", "proof_type must be photo or text")
    if proof_type == ProofType.TEXT:
        if has_file:
            raise InvalidProof("unexpected_file", "a text proof has no file")
        if not isinstance(text, str) or not text.strip():
            raise InvalidProof("missing_text", "a text proof needs text")
        if len(text) > MAX_TEXT_PROOF_CHARS:
            raise ProofTooLarge(f"text proofs are {MAX_TEXT_PROOF_CHARS} chars max")
        return Proof(ProofType.TEXT, text.encode(), TEXT_MIME)
    if text:
        raise InvalidProof("unexpected_text", "text is for text proofs")
    if photo is None:
        raise InvalidProof("missing_file", "a photo proof needs a file")
    if len(photo) > max_bytes:
        raise ProofTooLarge(f"proofs are at most {max_bytes} bytes")
    return Proof(ProofType.PHOTO, photo, photo_type(photo, declared))
