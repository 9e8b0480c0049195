"""`digitocr read` end to end: TAB and JSON lines, --debug-dir, batches with a bad file, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digitocr.cli import main
from ocr_fixtures import Style, easy_digits, make_image
from test_imageio import png_claiming


@pytest.fixture(scope="module")
def folder(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("images")
    digits = easy_digits(model)
    (d / "a.png").write_bytes(make_image("0714", Style(), *digits))
    (d / "b.jpg").write_bytes(make_image("25\n39", Style(jpeg_quality=80, seed=2), *digits))
    (d / "c.png").write_bytes(png_blank())
    return d


def png_blank() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (120, 80), 235).save(buf, "PNG")
    return buf.getvalue()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["read", *argv, "--threads", "1", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_tab_format(capsys, folder, model):
    code, out, _ = run(capsys, str(folder / "a.png"), str(folder / "b.jpg"), str(folder / "c.png"),
                       "--model", str(model))
    assert code == 0
    assert out.splitlines() == [f"{folder / 'a.png'}\t0714", f"{folder / 'b.jpg'}\t25\\n39", f"{folder / 'c.png'}\t"]


def test_tab_format_keeps_odd_file_names_on_one_line(capsys, folder, model, tmp_path):
    odd = tmp_path / "meter\tone\nday.png"
    odd.write_bytes((folder / "a.png").read_bytes())
    for many in ([], [str(folder / "c.png")]):  # one file; several (read through the bulk path)
        code, out, _ = run(capsys, str(odd), *many, "--model", str(model))
        assert code == 0 and out.splitlines()[0] == f"{tmp_path}/meter\\tone\\nday.png\t0714"


def test_json_lines(capsys, folder, model):
    code, out, _ = run(capsys, str(folder / "b.jpg"), "--json", "--model", str(model))
    [record] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and record["text"] == "25\n39" and record["file"] == str(folder / "b.jpg")
    assert [d["line"] for d in record["digits"]] == [0, 0, 1, 1]
    assert all(len(d["box"]) == 4 and 0 < d["confidence"] <= 1 for d in record["digits"])


def test_min_confidence_marks_digits(capsys, folder, model):
    _, out, _ = run(capsys, str(folder / "a.png"), "--json", "--min-confidence", "1", "--model", str(model))
    record = json.loads(out)
    assert "?" in record["text"] or all(d["confidence"] >= 1 for d in record["digits"])


def test_debug_dir(capsys, folder, model, tmp_path):
    code, _, _ = run(capsys, str(folder / "a.png"), "--debug-dir", str(tmp_path / "dbg"), "--model", str(model))
    assert code == 0
    assert (tmp_path / "dbg" / "a_overlay.png").stat().st_size > 0
    crops = sorted(p.name for p in (tmp_path / "dbg" / "a_crops").iterdir())
    assert crops == ["00_0.png", "01_7.png", "02_1.png", "03_4.png"]


def test_a_glob_through_a_symlink_loop_reads_each_file_once(capsys, folder, model, tmp_path):
    top = tmp_path / "rec"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "a.png").write_bytes((folder / "a.png").read_bytes())
    (top / "sub" / "loop").symlink_to(top)  # sub/loop/sub/loop/... all lead back to top
    code, out, _ = run(capsys, str(top / "**" / "*.png"), "--model", str(model))
    assert code == 0 and out.splitlines() == [f"{top / 'sub' / 'a.png'}\t0714"]


def test_an_image_on_standard_input(folder, model):
    def read(data: bytes, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "digitocr", "read", "-", *extra, "--model", str(model)],
                              input=data, capture_output=True, timeout=120)

    done = read((folder / "a.png").read_bytes(), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) | {"digits": []} == {"file": "-", "text": "0714",
                                                                                 "digits": []}
    empty = read(b"")
    assert empty.returncode == 2 and empty.stdout == b"" and len(empty.stderr.strip().splitlines()) == 1
    mixed = read(b"", str(folder / "a.png"))
    assert mixed.returncode == 2 and b"standard input" in mixed.stderr


def test_debug_dir_writes_for_a_file_name_that_is_not_utf8(folder, model, tmp_path):
    """A byte name such as Latin-1's "café" (b"caf\\xe9") arrives with a surrogate escape; cv2.imwrite crashed
    the whole process (SIGSEGV) on such a path, so this runs in a child process."""
    odd = os.fsencode(tmp_path) + b"/caf\xe9.png"
    Path(os.fsdecode(odd)).write_bytes((folder / "a.png").read_bytes())
    dbg = tmp_path / "dbg"
    done = subprocess.run([sys.executable, "-m", "digitocr", "read", odd, "--debug-dir", str(dbg), "--model",
                           str(model)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert os.path.getsize(os.fsencode(dbg) + b"/caf\xe9_overlay.png") > 0
    assert len(os.listdir(os.fsencode(dbg) + b"/caf\xe9_crops")) == 4


def test_debug_dir_keeps_same_stem_files_apart_and_clears_old_crops(capsys, folder, model, tmp_path):
    same = tmp_path / "same"
    same.mkdir()
    (same / "x.png").write_bytes((folder / "a.png").read_bytes())
    (same / "x.jpg").write_bytes((folder / "b.jpg").read_bytes())
    dbg = tmp_path / "dbg"
    (dbg / "x.png_crops").mkdir(parents=True)
    (dbg / "x.png_crops" / "99_9.png").write_bytes(b"left by an earlier run")
    code, _, _ = run(capsys, str(same / "x.png"), str(same / "x.jpg"), "--debug-dir", str(dbg), "--model", str(model))
    assert code == 0
    assert sorted(p.name for p in (dbg / "x.png_crops").iterdir()) == ["00_0.png", "01_7.png", "02_1.png", "03_4.png"]
    assert len(list((dbg / "x.jpg_crops").iterdir())) == 4
    assert (dbg / "x.png_overlay.png").exists() and (dbg / "x.jpg_overlay.png").exists()


@pytest.mark.parametrize("extra", [["--jobs", "2"], ["--output", "out.jsonl"]])
def test_debug_dir_is_refused_where_it_cannot_work(capsys, folder, model, tmp_path, extra):
    code, _, err = run(capsys, str(folder / "a.png"), "--debug-dir", str(tmp_path / "d"), *extra, "--model", str(model))
    assert code == 2 and "--debug-dir" in err and len(err.strip().splitlines()) == 1


def test_unwritable_debug_dir_is_one_line_before_any_work(capsys, folder, model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run(capsys, str(folder / "a.png"), "--debug-dir", str(blocker / "dbg"), "--model", str(model))
    assert code == 2 and out == "" and "--debug-dir" in err and len(err.strip().splitlines()) == 1


def test_a_folder_without_images_is_an_error(capsys, model, tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    code, _, err = run(capsys, str(tmp_path), "--model", str(model))
    assert code == 2 and "no images" in err


def test_folder_with_a_bad_file_reads_the_rest(capsys, folder, model, tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.png").write_bytes((folder / "a.png").read_bytes())
    (batch / "bad.png").write_bytes(b"not an image at all")
    code, out, err = run(capsys, str(batch), "--model", str(model))
    assert code == 1
    assert out.splitlines() == [f"{batch / 'good.png'}\t0714"]
    assert "bad.png" in err and len([line for line in err.splitlines() if "error" in line]) == 1


@pytest.mark.parametrize("extra", [[], ["--jobs", "2"]])
def test_json_lines_name_the_files_that_failed_too(capsys, folder, model, tmp_path, extra):
    """With --json every file gets a line on stdout, a failed one {"file", "error"} as in --output files."""
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.png").write_bytes((folder / "a.png").read_bytes())
    (batch / "bad.png").write_bytes(b"not an image at all")
    code, out, err = run(capsys, str(batch), "--json", "--no-progress", *extra, "--model", str(model))
    records = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and set(records) == {"good.png", "bad.png"}
    assert records["good.png"]["text"] == "0714" and "not an image" in records["bad.png"]["error"]
    assert "bad.png" in err


def test_one_file_reads_alike_with_any_jobs(capsys, model, tmp_path):
    """--jobs is for many files: one bad file is still exit 2 and one line, with no progress bar."""
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    code, out, err = run(capsys, str(path), "--jobs", "2", "--model", str(model))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "empty" in err


@pytest.mark.parametrize(("content", "message"), [(b"", "empty"), (b"hello", "not an image"),
                                                  (png_claiming(30_000, 30_000), "limit")])
def test_single_bad_file_exits_2_with_one_line(capsys, model, tmp_path, content, message):
    path = tmp_path / "one.png"
    path.write_bytes(content)
    code, out, err = run(capsys, str(path), "--model", str(model))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_max_pixels_flag(capsys, folder, model):
    code, _, err = run(capsys, str(folder / "a.png"), "--max-pixels", "100", "--model", str(model))
    assert code == 2 and "limit" in err


def test_an_empty_folder_among_inputs_is_reported_and_the_rest_read(capsys, folder, model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, str(empty), str(folder / "a.png"), "--model", str(model))
    assert code == 1 and out.splitlines() == [f"{folder / 'a.png'}\t0714"]
    assert f"{empty}: no images in this folder" in err
    code, _, err = run(capsys, str(empty), str(tmp_path / "*.nothing"), "--model", str(model))
    assert code == 2 and "no images in this folder" in err and "no files match" in err  # nothing at all: one line
    assert len(err.strip().splitlines()) == 1


def test_a_file_named_twice_is_read_once(capsys, folder, model, monkeypatch):
    monkeypatch.chdir(folder)
    code, out, _ = run(capsys, "a.png", "./a.png", str(folder / "a.png"), "--model", str(model))
    assert code == 0 and out.splitlines() == ["a.png\t0714"]


def test_output_dash_prints_json_lines(capsys, folder, model, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, str(folder / "a.png"), "--output", "-", "--model", str(model))
    assert code == 0 and json.loads(out)["text"] == "0714"
    assert not (tmp_path / "-").exists()  # not a file named "-"


def test_hidden_files_and_folders_are_skipped_as_globs_skip_them(capsys, folder, model, tmp_path):
    root = tmp_path / "scans"
    (root / ".cache").mkdir(parents=True)
    (root / "a.png").write_bytes((folder / "a.png").read_bytes())
    (root / ".thumb.png").write_bytes(b"not even an image")
    (root / ".cache" / "b.png").write_bytes(b"not even an image")
    code, out, _ = run(capsys, str(root), "--recursive", "--model", str(model))
    assert code == 0 and out.splitlines() == [f"{root / 'a.png'}\t0714"]
