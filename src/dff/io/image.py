"""The one image-file reader: decode a file as BGR uint8, as mmcv.imfrombytes does."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dff.errors import DFFError, InputError


def read_image(path: Path | str, error: type[DFFError] = InputError) -> np.ndarray:
    """Decode an image file as BGR uint8 (H, W, 3); grayscale, alpha and 16-bit images are converted.

    A missing, unreadable or undecodable file raises `error` (a DFFError subclass: DatasetError for a dataset's
    frames) naming the file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise error(f"{path}: image file is missing or unreadable ({e.strerror or e})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise error(f"{path}: not a decodable image")
    return image
