"""What an inference worker does with one request: functions of (reader, request data) -> JSON-ready dicts.

They run on a pool thread or in a worker process (so they are module-level and picklable by reference):
decoding, reading and PNG encoding all stay off the event loop.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from ..constants import PIXEL_MAX


def png_data_url(crop: np.ndarray) -> str:
    """A (28, 28) float crop in [0, 1] (white ink on black, as the network sees it) -> data:image/png URL."""
    pixels = np.clip(np.asarray(crop, np.float32) * PIXEL_MAX + 0.5, 0, PIXEL_MAX).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def probabilities(probs: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in probs]


def read_payload(reader: Any, data: bytes, name: str | None, crops: bool) -> dict[str, Any]:
    """`read --json`'s object; with crops, each digit also gets its 28x28 input and 10 probabilities."""
    result = reader.read(data, name=name)
    payload = result.to_dict()
    if crops and result.digits:
        probs = getattr(result, "probabilities", None)
        if probs is None:  # the classifier is deterministic: its answer for the same crops is the same
            probs = reader.classifier(result.crops)  # (N, 10)
        for entry, crop, p in zip(payload["digits"], result.crops, probs, strict=True):
            entry["probabilities"] = probabilities(p)
            entry["crop"] = png_data_url(crop)
    return payload


def classify_payload(reader: Any, data: bytes, name: str | None = None) -> dict[str, Any]:
    """The whole image is one digit: the predicted digit, its confidence and all 10 probabilities. `name`
    names the image in errors, as /v1/read's do."""
    probs = reader.classify(data, name)  # (10,)
    digit = int(np.argmax(probs))
    return {"digit": digit, "confidence": round(float(probs[digit]), 6), "probabilities": probabilities(probs)}
