"""benchmarks/ocr_accuracy.py: several sets read as one, misses and misreads counted, reader constants set."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ocr_accuracy import aligned_correct, read_set, set_constants


def write_set(folder: Path, items: list[tuple[str, str, str]]) -> Path:
    """(file, category, true text) per image; the images' bytes are their file names (the fake reads them)."""
    folder.mkdir()
    for file, _, _ in items:
        (folder / file).write_bytes(file.encode())
    truth = [{"file": f, "category": c, "text": t} for f, c, t in items]
    (folder / "truth.json").write_text(json.dumps({"seed": 0, "images": truth}))
    return folder


class FakeReader:
    """Reads each image as the text `answers` gives its bytes (the file name)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def read(self, data: bytes, name: str | None = None):
        return SimpleNamespace(text=self.answers[data.decode()])


def test_several_sets_are_read_as_one(tmp_path):
    a = write_set(tmp_path / "a", [("1.png", "number", "123"), ("2.png", "isolated", "7")])
    b = write_set(tmp_path / "b", [("3.png", "number", "45"), ("4.png", "number", "6\n8")])
    reader = FakeReader({"1.png": "123", "2.png": "1", "3.png": "45", "4.png": "6\n3"})
    failures: list = []
    results = read_set(reader, [a, b], failures)
    assert results["number"]["images"] == 3 and results["number"]["misses"] == 1
    assert results["isolated"]["misses"] == 1 and results["all"]["misses"] == 2
    assert results["all"]["exact"] == pytest.approx(0.5)
    assert results["number"]["digit_accuracy"] == pytest.approx(6 / 7)  # 3 + 2 + 1 of 3 + 2 + 2 digits
    assert failures == [(str(a), "2.png", "isolated", "7", "1"), (str(b), "4.png", "number", "6\n8", "6\n3")]
    only = read_set(reader, b, categories=["isolated"])  # one folder, a category it lacks
    assert only == {}


def test_aligned_correct_counts_digits_matched_in_order():
    assert aligned_correct("12345", "12345") == 5
    assert aligned_correct("12345", "1245") == 4  # one dropped
    assert aligned_correct("12\n34", "12 34") == 4  # line breaks and spaces are layout, not digits
    assert aligned_correct("111", "") == 0


def test_reader_constants_are_set_and_unknown_names_refused():
    import digitocr.ocr
    import digitocr.preprocess

    before = (digitocr.ocr.WHOLE_VOTE, digitocr.preprocess.CORE_STEP)
    try:
        assert set_constants(["WHOLE_VOTE=1", "CORE_STEP=1.3"]) == {"WHOLE_VOTE": 1.0, "CORE_STEP": 1.3}
        assert digitocr.ocr.WHOLE_VOTE == 1.0 and digitocr.preprocess.CORE_STEP == 1.3
    finally:
        digitocr.ocr.WHOLE_VOTE, digitocr.preprocess.CORE_STEP = before
    for bad in ("NO_SUCH_CONSTANT=1", "WHOLE_VOTE", "Reader=1"):
        with pytest.raises(SystemExit, match="no reader constant"):
            set_constants([bad])


def test_ocr_factors_counts_substitutions_by_knob_and_pages_read_differently():
    from ocr_factors import compare, digit_table, error_kinds

    style = {"height": 30, "pen": 1.0, "blur_px": 0.2, "rotation": -4.0, "jpeg_quality": None, "noise": 0.0}
    rows = [{"text": "123", "read": "173", "style": style, "clean_right": [True, True, True]},
            {"text": "45", "read": "4", "style": style, "clean_right": [True, True]},  # a digit lost: not counted
            {"text": "6\n7", "read": "6\n1", "style": style, "clean_right": [True, False]}]  # a hard writer's 7
    table = digit_table(rows)
    assert table[0].startswith("digits on pages read with the right count: 5, misread 2 (40.000%)")
    assert "misread clean too (hard writers): 1 of 1; the rest: 1 (25.000%)" in table[0]
    assert "| rotation | [3, 6) | 4 | 1 | 25.000% |" in table  # its size either way; the hard 7 is not in it
    assert "| jpeg_quality | [0, 1) | 4 | 1 | 25.000% |" in table  # a PNG
    more = [{"text": "12", "read": "121"}, {"text": "1 2", "read": "12"}, {"text": "12", "read": "12"}]
    assert error_kinds(rows + more) == {"substituted": 2, "extra digit": 1, "missing digit": 1, "layout only": 1}
    other = [dict(r, read=r["text"]) for r in rows]
    assert compare(rows, other) == "pages 3: read right 0 -> 3; 3 newly right, 0 newly wrong"
    with pytest.raises(SystemExit, match="different pages"):
        compare(rows, rows[:2])


def test_vote_sweep_counts_pages_and_asks_only_unsure_digits():
    """vote_sweep.pages_misread: the second network's vote changes unsure digits only; pages, not digits, count."""
    import numpy as np

    from vote_sweep import pages_misread

    d = {"label": np.array([3, 3, 5]), "page": np.array([0, 0, 1])}
    base = np.log(np.full((3, 10), 0.01))
    base[0, 3] = np.log(0.99)  # sure and right
    base[1, [3, 8]] = np.log([0.4, 0.5])  # unsure, wrong (8)
    base[2, [5, 6]] = np.log([0.45, 0.5])  # unsure, wrong (6)
    second = np.log(np.full((3, 10), 0.01))
    second[:, 3] = np.log(0.9)  # says 3 everywhere: right for page 0, still wrong for page 1
    assert pages_misread(d, base, None, 0.9, 0.5) == (2, 2 / 3)  # two would ask; no one to ask
    assert pages_misread(d, base, second, 0.9, 1.0) == (1, 2 / 3)  # digit 1 mended; digit 2 now reads 3
    assert pages_misread(d, base, second, 0.3, 1.0) == (2, 0.0)  # nobody is that unsure: no one asks
