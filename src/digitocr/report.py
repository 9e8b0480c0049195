"""The run report: one self-contained HTML page (inline CSS, figures as base64 PNG, no external resources)
telling a run's story: its recipe, machine, training curve, test accuracy, errors, filters and activations.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from . import plots
from .config import TrainConfig
from .data.datasets import Split
from .ensemble import MEMBER_DIR
from .errors import DigitocrError
from .inference import EvalResult, evaluate
from .metrics import format_confusion
from .train import CONFIG, ENVIRONMENT, METRICS

REPORT_NAME = "report.html"
TEST_TITLE = "Test-Set"

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
.lead { font-size: 1.3rem; } .muted { color: #666; }
table { border-collapse: collapse; } td, th { padding: 0.15rem 0.8rem; border-bottom: 1px solid #eee; }
th { text-align: left; font-weight: 600; } pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: 0.9rem; } img { max-width: 100%; }
"""


@dataclass
class RunRecord:
    """What a run folder holds besides its checkpoint."""

    path: Path
    config: dict[str, Any]
    environment: dict[str, Any]
    metrics: list[dict[str, Any]]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise DigitocrError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DigitocrError(f"{path}: not valid JSON ({e})") from None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of records; a missing file is an empty history."""
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DigitocrError(f"{path}: line {n} is not valid JSON ({e})") from None
        if not isinstance(record, dict) or "iteration" not in record:
            raise DigitocrError(f"{path}: line {n} is not a metrics record")
        records.append(record)
    return records


def read_run(run_dir: str | Path) -> RunRecord:
    """A run folder's config, environment and metrics; anything that is not a run folder is an error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DigitocrError(f"{run_dir}: no such run folder")
    if not (run_dir / CONFIG).is_file():
        first_member = run_dir / MEMBER_DIR.format(0)
        if (first_member / CONFIG).is_file():  # `train --ensemble K` writes K run folders, member-0 ...
            raise DigitocrError(f"{run_dir}: an ensemble's folder; its members are run folders: "
                                f"report {first_member} (and the others)")
        raise DigitocrError(f"{run_dir}: not a run folder (no {CONFIG}; train one with `digitocr train`)")
    config = _read_json(run_dir / CONFIG)
    if not isinstance(config, dict):
        raise DigitocrError(f"{run_dir / CONFIG}: expected a JSON object")
    TrainConfig.from_dict(config)  # unknown keys or a bad shape fail here, naming the keys
    env_path = run_dir / ENVIRONMENT
    environment = _read_json(env_path) if env_path.is_file() else {}
    return RunRecord(run_dir, config, environment, read_metrics(run_dir / METRICS))


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted.key, value) rows: config.json's `model` becomes model.arch, ..."""
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def accuracy_text(result: EvalResult, title: str = TEST_TITLE) -> str:
    """The notebook's line: 'Accuracy on Test-Set: 98.5% (9850 / 10000)'."""
    return f"Accuracy on {title}: {result.accuracy:.1%} ({result.correct} / {result.total})"


def training_summary(metrics: list[dict[str, Any]]) -> str:
    """One sentence on the recorded history: iterations, training time, last validation accuracy."""
    if not metrics:
        return "No training metrics were recorded."
    last = max(r["iteration"] for r in metrics)
    val = [r for r in metrics if r.get("split") == "validation"]
    seconds = sum(r.get("train_seconds", 0.0) for r in val)  # one per train invocation
    text = f"{last:,} iterations recorded, {seconds:.1f} s of training"
    if val:
        text += f"; last validation accuracy {val[-1]['accuracy']:.1%} (iteration {val[-1]['iteration']:,})"
    return text + "."


# ---- HTML pieces: every text goes through html.escape

def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _img(png: bytes, caption: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_esc(caption)}" src="{uri}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{''.join(parts)}</section>"


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{_esc(text)}</p>"


def render_html(run: RunRecord, model_name: str, iterations: int, result: EvalResult,
                figures: dict[str, bytes], image_index: int, input_channel: int, bf16: bool = False) -> str:
    """The page, from values already computed; `figures` maps file stems (as `digitocr plot`) to PNG bytes."""
    n_errors = result.total - result.correct
    body = [
        f"<h1>digitocr run: {_esc(run.path.name or run.path)}</h1>",
        _p(f"Run folder {run.path}; model {model_name} after {iterations:,} iterations; evaluated in "
           f"{'bf16' if bf16 else 'fp32'}.", "muted"),
        _p(accuracy_text(result), "lead"),
        _section("Configuration", _table(flatten(run.config))),
        _section("Environment", _table(flatten(run.environment)) if run.environment
                 else _p("No environment.json in the run folder.")),
        _section("Training", _p(training_summary(run.metrics)),
                 _img(figures["training_curve"], "Accuracy on each logged training batch and on the "
                                                 "validation set (left); training loss (right).")),
        _section("Test accuracy", _p(accuracy_text(result)),
                 _img(figures["confusion"], "Confusion matrix: rows are true classes, columns predicted."),
                 f"<pre>{_esc(format_confusion(result.confusion))}</pre>"),
        _section("Example errors", _p(f"{n_errors:,} test images are misclassified; the first nine:"),
                 _img(figures["errors"], "The first nine misclassified test images, in dataset order.")),
        _section("Filters", _p("Weights of the first two conv layers: red positive, blue negative, "
                               "one colour scale per figure."),
                 _img(figures["filters_conv1"], "Conv layer 1 filters."),
                 _img(figures["filters_conv2"], f"Conv layer 2 filters for input channel {input_channel}.")),
        _section("Activations", _p(f"Test image {image_index} and what each conv block makes of it."),
                 _img(figures["image"], f"Test image {image_index}."),
                 _img(figures["activations_conv1"], "Conv block 1 outputs."),
                 _img(figures["activations_conv2"], "Conv block 2 outputs.")),
    ]
    title = _esc(f"digitocr report: {run.path.name or run.path}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def build_report(run: RunRecord, model: nn.Module, test: Split, model_name: str, iterations: int,
                 bf16: bool = False, image_index: int = 0, input_channel: int = 0) -> str:
    """Evaluate `model` on the test split, draw every figure and render the page."""
    plots.check_input_channel(plots.conv_weights(plots.shown_network(model)[0])[1], input_channel)
    plots.pick_image(test, image_index)
    result = evaluate(model, test, bf16)
    figures = {
        "training_curve": plots.training_curve_figure(run.metrics),
        "confusion": plots.confusion_figure(result.confusion),
        "errors": plots.errors_figure(test, result.pred),
        **plots.filter_figures(model, input_channel),
        **plots.activation_figures(model, test, image_index),
    }
    pngs = {name: plots.figure_png(fig) for name, fig in figures.items()}
    return render_html(run, model_name, iterations, result, pngs, image_index, input_channel, bf16)
