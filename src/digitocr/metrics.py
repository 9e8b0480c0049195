"""Pure metric functions on numpy arrays of class indices."""

from __future__ import annotations

import numpy as np

from .constants import NUM_CLASSES


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true)) if len(true) else 0.0


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(C, C) counts; rows are true classes, columns predicted."""
    return np.bincount(true * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def error_indices(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Indices of misclassified samples, in dataset order (the notebook shows the first nine)."""
    return np.flatnonzero(pred != true)


def format_confusion(cm: np.ndarray) -> str:
    """The confusion matrix as text, with a header of predicted classes."""
    width = max(4, len(str(cm.max())) + 1)
    head = " " * 8 + "".join(f"{c:>{width}}" for c in range(cm.shape[1])) + "   <- predicted"
    rows = [f"true {r:>2} " + "".join(f"{v:>{width}}" for v in row) for r, row in enumerate(cm)]
    return "\n".join([head, *rows])
