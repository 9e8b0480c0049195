"""Pure metric functions on numpy arrays of class indices (and, for log_loss, probabilities)."""

from __future__ import annotations

import numpy as np

from .constants import NUM_CLASSES


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true)) if len(true) else 0.0


def log_loss(probs: np.ndarray, true: np.ndarray, floor: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true classes under (N, C) probabilities; a zero counts as `floor`.
    Unlike accuracy it moves with every image, right or wrong: it ranks models that err on the same images."""
    p_true = probs[np.arange(len(true)), true]
    return float(-np.log(np.maximum(p_true, floor)).mean()) if len(true) else 0.0


TEMPERATURES = tuple(np.geomspace(0.05, 2.0, 40))  # calibrated_log_loss's grid: sharpen up to 20x, soften 2x


def calibrated_log_loss(probs: np.ndarray, true: np.ndarray,
                        temperatures: tuple[float, ...] = TEMPERATURES) -> tuple[float, float]:
    """(log loss, temperature T) of softmax(log(probs) / T) at the T in `temperatures` that minimises it.

    Label smoothing caps a network's confidence (0.1 of smoothing: about 0.91 on the true class), so its raw
    log loss measures the smoothing more than the network. A temperature rescales confidence without changing
    any prediction; at the best one, what remains is how well the probabilities order right above wrong."""
    if not len(true):
        return 0.0, 1.0
    logp = np.log(np.maximum(probs, 1e-12)).astype(np.float64)  # (N, C)
    best = (np.inf, 1.0)
    for t in temperatures:
        z = logp / t
        z -= z.max(1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(true)), true]))
        best = min(best, (nll, float(t)))
    return best


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
