"""JPEG helpers that avoid decoding: size from the header, a cheap integrity check; and the encoder.
(Decoding is `perception.drives.messages.Image.to_bgr`, the one decode path.)

Replay passes JPEG bytes through untouched, so the frame iterator must find broken frames without
decoding them: `looks_like_jpeg` checks the start-of-image and end-of-image markers (garbage bytes and
frames cut short both fail), `jpeg_size` reads width and height from the start-of-frame segment.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic...): C0-CF except DHT C4, JPG C8, DAC CC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])


def looks_like_jpeg(data: bytes | memoryview) -> bool:
    """True when ``data`` starts with SOI and ends with EOI (allowing a few trailing pad bytes)."""
    if len(data) < 4 or bytes(data[:3]) != b"\xff\xd8\xff":
        return False
    # Some encoders pad after EOI; look in the last 32 bytes only, so the check stays O(1).
    return _EOI in bytes(data[-32:])


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width_px, height_px) from the SOF segment, or None when the header is not a readable JPEG."""
    buf = data if isinstance(data, bytes) else bytes(data)
    if not buf.startswith(_SOI):
        return None
    pos = 2
    n = len(buf)
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", buf, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", buf, pos + 5)
            return (width, height) if width and height else None
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any SOF
            return None
        pos += 2 + length
    return None


def encode_jpeg(image_bgr: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an image: uint8 [H, W, 3] BGR or [H, W] grey."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3) or (image_bgr.ndim == 3 and image_bgr.shape[2] != 3):
        raise ValueError(f"image must be uint8 [H, W, 3] BGR or [H, W]; got {image_bgr.dtype} {image_bgr.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality {quality!r} is outside [1, 100]")
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode an image of shape {image_bgr.shape}")
    return buf.tobytes()
