"""Pure metrics: accuracy, log loss, confusion matrix, error indices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitocr.metrics import accuracy, calibrated_log_loss, confusion_matrix, error_indices, log_loss


def test_accuracy_and_errors():
    pred, true = np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])
    assert accuracy(pred, true) == 0.75
    assert error_indices(pred, true).tolist() == [2]
    assert accuracy(np.array([], int), np.array([], int)) == 0.0


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), num_classes=2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_log_loss_of_uniform_sure_and_wrong_predictions():
    true = np.array([0, 3, 9])
    assert log_loss(np.full((3, 10), 0.1), true) == pytest.approx(math.log(10))
    assert log_loss(np.eye(10)[true], true) == pytest.approx(0.0)
    wrong = np.eye(10)[[1, 3, 9]]  # sure and wrong on the first: the floor keeps it finite
    assert log_loss(wrong, true) == pytest.approx(-math.log(1e-12) / 3)


def test_log_loss_separates_models_that_err_on_the_same_images():
    true = np.array([0, 0, 1])
    sure = np.array([[0.99, 0.01], [0.9, 0.1], [0.6, 0.4]])
    unsure = np.array([[0.6, 0.4], [0.55, 0.45], [0.6, 0.4]])
    assert accuracy(sure.argmax(1), true) == accuracy(unsure.argmax(1), true)
    assert log_loss(sure, true) < log_loss(unsure, true)


def test_calibrated_log_loss_sees_past_label_smoothing():
    n = 2000
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.99, true, (true + 1) % 10)  # right on 99%, like an MNIST network ...

    def smoothed(top: float) -> np.ndarray:  # ... whose label smoothing caps its confidence at `top`
        p = np.full((n, 10), (1 - top) / 9)
        p[np.arange(n), pred] = top
        return p

    raw, heavier = log_loss(smoothed(0.91), true), log_loss(smoothed(0.82), true)
    calibrated, t = calibrated_log_loss(smoothed(0.91), true)
    assert heavier > 1.5 * raw  # raw log loss ranks the smoothing ...
    assert calibrated_log_loss(smoothed(0.82), true)[0] == pytest.approx(calibrated, rel=0.02)  # ... this does not
    assert calibrated < 0.7 * raw and t < 1.0  # sharpened: the cost of smoothing is gone ...
    assert calibrated > log_loss(np.eye(10)[pred] * 0.99 + 0.001, true) * 0.5  # ... the cost of the errors is not
