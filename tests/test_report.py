"""The HTML run report: self-contained, escaped, telling the right accuracy; `digitocr report` end to end."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import pytest
from PIL import Image

from conftest import N_TEST, TINY_ITERATIONS, run_cli
from digitocr.errors import DigitocrError
from digitocr.inference import evaluate
from digitocr.registry import load_model
from digitocr.report import flatten, read_metrics, read_run
from digitocr.train import CONFIG, METRICS

RUN_NAME = 'run <&> "x"'  # a folder name that must be escaped wherever the page shows it
NUM_FIGURES = 8  # curve, confusion, errors, 2 filters, image, 2 activations
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def tiny_run_name() -> str:
    """The tiny run (conftest.tiny_run) goes in a folder whose name must be escaped in the page."""
    return RUN_NAME


def test_report_is_one_self_contained_escaped_page(tiny_run, capsys):
    _, run_dir, ds = tiny_run
    ckpt = run_dir / "checkpoint.safetensors"
    assert run_cli(["report", str(run_dir), "--model", str(ckpt), "--image-index", str(N_TEST - 1),
                    "--input-channel", "3", "--threads", "1", "--precision", "fp32"]) == 0
    out = run_dir / "report.html"
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    pngs = DATA_URI.findall(page)
    assert len(pngs) == NUM_FIGURES
    for data in pngs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG"
    result = evaluate(load_model(run_dir).model, ds.test)  # a second evaluation, as the reference
    assert f"Accuracy on Test-Set: {result.accuracy:.1%} ({result.correct} / {result.total})" in page
    assert html.escape(RUN_NAME) in page and RUN_NAME not in page
    assert "<th>model.arch</th><td>seed</td>" in page  # the config table
    assert f"Test image {N_TEST - 1}." in page and "input channel 3." in page


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no such run folder"),
    (lambda d: d, "not a run folder"),
    (lambda d: (d / CONFIG).write_text("{not json") and d, "not valid JSON"),
    (lambda d: (d / CONFIG).write_text('{"colour": 1}') and d, "unknown config keys"),
    (lambda d: (d / "member-0").mkdir() or ((d / "member-0" / CONFIG).write_text("{}") and d), "member-0"),
])
def test_bad_run_folder_exits_2_with_one_line(tmp_path, capsys, make, message):
    rc = run_cli(["report", str(make(tmp_path))])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_bad_figure_args_exit_2(tiny_run, tmp_path, capsys):
    _, run_dir, _ = tiny_run
    rc = run_cli(["report", str(run_dir), "--out", str(tmp_path / "r.html"), "--image-index", str(N_TEST)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--image-index" in err
    assert not (tmp_path / "r.html").exists()


def test_read_run_and_metrics(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    record = read_run(run_dir)
    assert record.config["iterations"] == TINY_ITERATIONS and record.environment["torch"]
    assert any(r.get("split") == "validation" for r in record.metrics)
    bad = tmp_path / METRICS
    bad.write_text(json.dumps({"iteration": 1}) + "\n\n[1, 2]\n")
    with pytest.raises(DigitocrError, match="line 3"):
        read_metrics(bad)
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_flatten_nested_config():
    assert flatten({"a": 1, "model": {"arch": "seed", "widths": [1, 2]}}) == \
        [("a", 1), ("model.arch", "seed"), ("model.widths", [1, 2])]
