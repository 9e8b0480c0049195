"""Pure metric functions on numpy arrays of class indices (and, for log_loss, probabilities)."""

from __future__ import annotations

import numpy as np

from .constants import NUM_CLASSES


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true)) if len(true) else 0.0


PROB_FLOOR = 1e-12  # a probability of 0 counts as this in log losses (finite, and very costly)


def log_loss(probs: np.ndarray, true: np.ndarray, floor: float = PROB_FLOOR) -> float:
    """Mean negative log-likelihood of the true classes under (N, C) probabilities; a zero counts as `floor`.
    Unlike accuracy it moves with every image, right or wrong: it ranks models that err on the same images."""
    p_true = probs[np.arange(len(true)), true]
    return float(-np.log(np.maximum(p_true, floor)).mean()) if len(true) else 0.0


SOFTEST, SHARPEST = 0.5, 20.0  # calibrated_log_loss looks for 1/T in [1/2, 20]: soften 2x to sharpen 20x
GOLDEN_STEPS = 24  # golden-section steps: the bracket shrinks to 0.618**24 ~ 1e-5 of its width


def calibrated_log_loss(probs: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(log loss, temperature T) of softmax(log(probs) / T) at the T that minimises it.

    Label smoothing caps a network's confidence (0.1 of smoothing: about 0.91 on the true class), so its raw
    log loss measures the smoothing more than the network. A temperature rescales confidence without changing
    any prediction; at the best one, what remains is how well the probabilities order right above wrong.
    The loss is convex in 1/T (a log-sum-exp of a linear function minus a linear one): golden-section search."""
    if not len(true):
        return 0.0, 1.0
    logp = np.log(np.maximum(probs, PROB_FLOOR)).astype(np.float32)  # (N, C)
    own = logp[np.arange(len(true)), true]  # (N,)

    def loss(beta: float) -> float:
        z = logp * np.float32(beta)
        top = z.max(1)
        return float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(1)) - beta * own))

    lo, hi = SOFTEST, SHARPEST
    ratio = (5 ** 0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(GOLDEN_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    beta = (lo + hi) / 2
    return loss(beta), 1.0 / beta


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
