"""The bundled models: present, weights only, described by their cards, and as accurate as the cards say."""

import pytest

from digitocr.checkpoint import read_checkpoint
from digitocr.constants import DATASETS
from digitocr.inference import evaluate
from digitocr.registry import bundled_models, load_model, model_card

# "reader" is the OCR pipeline's 11-class segmentation model (digits + "not one digit"), trained on framed
# synthetic crops; its card and its reproduction are tested in test_ocr.py. The rest are MNIST classifiers.
BUNDLED = sorted(set(bundled_models()) - {"reader"})
REQUIRED = {"seed", "best"}  # `digitocr evaluate --model best` must work right after install, offline
CARD_KEYS = {"training_command", "seeds", "data_sha256", "test_accuracy", "test_correct", "test_total", "date"}
MAX_BYTES = 8 * 2**20  # bundled weights stay small enough to ship in the wheel


def test_the_required_models_are_bundled():
    assert set(BUNDLED) >= REQUIRED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_weights_only_and_has_a_card(name):
    path = bundled_models()[name]
    assert path.stat().st_size < MAX_BYTES
    tensors, _ = read_checkpoint(path)
    assert all(k.startswith("model.") for k in tensors)  # no optimizer or RNG state
    card = model_card(name)
    assert set(card) >= CARD_KEYS
    assert card["data_sha256"] == DATASETS["mnist"]["sha256"] and card["test_total"] == 10_000
    assert len(card["seeds"]) == load_model(name).members


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_test_accuracy_equals_its_card(name, mnist):
    """Recomputed in fp32, as the card was: the same count of correct test images."""
    result = evaluate(load_model(name).model, mnist.test, bf16=False)
    card = model_card(name)
    assert (result.correct, result.total) == (card["test_correct"], card["test_total"])
    assert result.accuracy == pytest.approx(card["test_accuracy"], abs=0)
