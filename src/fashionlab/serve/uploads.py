"""Reading an uploaded image: size limit while streaming, content type, and a real decode.

Accepted: ``multipart/form-data`` with a file field ``file``, or the raw image bytes with an
``image/*`` (or ``application/octet-stream``) content type. The body is counted while it streams in,
so an oversized upload is refused (413) without being held in memory. The image goes through the
same policy as training and prediction (``fashionlab.data.images``: EXIF orientation, 16-bit and
other modes, pixel cap): a format PIL does not recognise is 415, an image over the pixel cap or a
decompression bomb is 413 (from the header, before decoding), a broken file (truncated JPEG) is 400.
"""
from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..data.images import BadImage, load_rgb, open_image

MULTIPART_SLACK = 64 * 1024  # form boundaries and part headers on top of the file itself
STATUS = {"missing": 400, "format": 415, "too_large": 413, "broken": 400}  # BadImage.kind -> HTTP status
ACCEPTED = "multipart/form-data with a 'file' field, or raw image bytes with an image/* content type"


class UploadError(Exception):
    """An HTTP-level problem with the upload; ``status`` is the response code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload larger than the {limit / 2**20:g} MB limit")


async def _limited(request: Request, limit: int, max_bytes: int) -> AsyncIterator[bytes]:
    """The request body, failing with 413 as soon as more than ``limit`` bytes arrived."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(max_bytes)
        yield chunk


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """(image bytes, file name) of the request; raises ``UploadError`` with the status to answer."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = ctype == "multipart/form-data"
    if not (multipart or ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise UploadError(415, f"content type '{ctype or 'none'}' is not accepted; send {ACCEPTED}")
    limit = max_bytes + (MULTIPART_SLACK if multipart else 0)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(max_bytes)
    if not multipart:
        data = b"".join([chunk async for chunk in _limited(request, limit, max_bytes)])
        name = "upload"
    else:
        parser = MultiPartParser(request.headers, _limited(request, limit, max_bytes), max_files=1, max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise UploadError(400, f"malformed multipart upload ({exc.message})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "multipart upload has no file field 'file'")
        try:
            data = await upload.read()
        finally:
            await form.close()
        name = (upload.filename or "upload")[-100:]
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not data:
        raise UploadError(400, "empty upload: no image bytes received")
    return data, name


class _NamedBytes(io.BytesIO):
    """Bytes that print as the upload's name, so the image policy's messages name the file."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self._label = name

    def __str__(self) -> str:
        return self._label


def _upload_error(err: BadImage) -> UploadError:
    return UploadError(STATUS[err.kind], str(err))


def probe(data: bytes, name: str = "upload", draft: int | None = None,
          max_pixels: int | None = None) -> tuple[str, int]:
    """(PIL format name, pixels the decode will hold) from the header alone; raises ``UploadError``
    (415 not an image, 413 over the pixel cap or a decompression bomb, 400 broken)."""
    try:
        img = open_image(_NamedBytes(data, name), max_pixels)
    except BadImage as err:
        raise _upload_error(err) from None
    with img:
        (width, height), fmt = img.size, img.format or "unknown"
    scale = 1
    if draft and fmt == "JPEG":  # DCT scaling decodes at 1/2, 1/4 or 1/8 while both sides stay >= draft
        fit = min(width // draft, height // draft)
        scale = next((s for s in (8, 4, 2) if fit >= s), 1)
    return fmt, -(-width // scale) * -(-height // scale)


def image_format(data: bytes, name: str = "upload", max_pixels: int | None = None) -> str:
    """PIL's format name (JPEG, PNG, ...) from the header alone; 415 when it is not an image."""
    return probe(data, name, None, max_pixels)[0]


def decode_upload(data: bytes, name: str = "upload", draft: int | None = None) -> np.ndarray:
    """The RGB uint8 array ``load_rgb`` gives for a file with these bytes; ``UploadError`` if it fails."""
    try:
        return load_rgb(_NamedBytes(data, name), draft=draft)
    except BadImage as err:
        raise _upload_error(err) from None


def decode_image(data: bytes, name: str = "upload", draft: int | None = None,
                 max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """(RGB uint8 array, format) exactly as ``load_rgb`` gives for a file with these bytes."""
    fmt = image_format(data, name, max_pixels)
    return decode_upload(data, name, draft), fmt
