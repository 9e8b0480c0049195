"""digitocr: handwritten-digit OCR with the classic MNIST CNN, made fast on a CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Reader", "__version__"]

if TYPE_CHECKING:
    from .ocr import Reader


def __getattr__(name: str):
    """`from digitocr import Reader` imports the OCR stack on first use only (no model at import time)."""
    if name == "Reader":
        from .ocr import Reader

        return Reader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
