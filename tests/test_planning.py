"""recolor.planning: what `colorize`, `sample-diverse` and `train` decide, tested without running a model."""
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from recolor.planning import UsageError, plan_colorize, plan_sample_diverse, training_dataset

ROOT = Path(__file__).resolve().parents[1]


def grey(path: Path, size=(24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 90).save(path)
    return path


def test_colorize_plan_keeps_sub_folders_skips_done_outputs_and_refuses_overwriting_inputs(tmp_path):
    source = tmp_path / "in"
    grey(source / "a.png")
    grey(source / "sub" / "b.jpg")
    (source / "notes.txt").write_text("a sidecar")
    out = tmp_path / "out"
    grey(out / "a.png")  # done by an earlier run
    plan = plan_colorize([str(source)], out)
    assert [(job.source, job.target) for job in plan.jobs] == [(source / "sub" / "b.jpg", out.resolve() / "sub" / "b.jpg")]
    assert [(r["input"], r["status"]) for r in plan.records] == [(str(source / "a.png"), "skipped")]
    assert plan.not_images == 1 and plan.jobs[0].tag == {"input": str(source / "sub" / "b.jpg"), "output": str(out.resolve() / "sub" / "b.jpg"), "status": "ok"}
    again = plan_colorize([str(source)], out, overwrite=True)
    assert len(again.jobs) == 2 and not again.records
    in_place = plan_colorize([str(source / "a.png")], in_place=True)
    assert [(job.source, job.target) for job in in_place.jobs] == [(source / "a.png", source / "a.png")]


def test_an_output_landing_on_an_input_is_an_error_record(tmp_path):
    a = grey(tmp_path / "x.png")
    b = grey(tmp_path / "x.jpg")
    plan = plan_colorize([str(b), str(a)], tmp_path, fmt="png", overwrite=True)
    assert not plan.jobs
    errors = [r["error"] for r in plan.records]
    assert "would overwrite another input" in errors[0] and "would overwrite the input" in errors[1]


def test_usage_errors_are_found_before_any_work(tmp_path):
    photo = grey(tmp_path / "a.png")
    with pytest.raises(UsageError, match="cannot be combined with -o/--output"):
        plan_colorize([str(photo)], tmp_path / "out", in_place=True)
    with pytest.raises(UsageError, match="unsupported output extension '.pcx'"):
        plan_colorize([str(photo)], tmp_path / "out", fmt="pcx")
    with pytest.raises(UsageError, match="no input files found"):
        plan_colorize([str(tmp_path / "*.nothing")], tmp_path / "out")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    with pytest.raises(UsageError, match="cannot write to the output folder"):
        plan_colorize([str(photo)], tmp_path / "taken" / "out")
    assert not (tmp_path / "out").exists()


def test_diverse_plan_names_k_samples_and_a_sheet_and_keeps_same_named_photos_apart(tmp_path):
    jpg, png = grey(tmp_path / "in" / "p.jpg"), grey(tmp_path / "in" / "p.png")
    out = tmp_path / "out"
    plan = plan_sample_diverse([str(tmp_path / "in")], out, k=2, fmt="png")
    first, second = plan.jobs
    assert first.outputs == [out / "p_1.png", out / "p_2.png"] and first.sheet == out / "p_sheet.png"
    assert second.outputs == [out / "p_png_1.png", out / "p_png_2.png"] and second.sheet == out / "p_png_sheet.png"
    assert (first.source, second.source) == (jpg, png)
    for path in (*first.outputs, first.sheet):
        grey(path)
    assert [r["status"] for r in plan_sample_diverse([str(jpg)], out, k=2, fmt="png").records] == ["skipped"]
    grey(first.sheet).unlink()  # a killed run left a partial set: redone
    assert len(plan_sample_diverse([str(jpg)], out, k=2, fmt="png").jobs) == 1


def test_training_dataset_is_colour_photos_at_the_configs_size(tiny_photo_folder):
    from recolor.data import ColorPhotoDataset
    from recolor.registry import get_model_spec

    spec = get_model_spec("pix2pix")
    dataset = training_dataset(spec, spec.config({"image_size": 32}), tiny_photo_folder, train=False)
    assert isinstance(dataset, ColorPhotoDataset) and len(dataset) == 24 and dataset[0]["rgb"].shape[-1] == 32


def test_planning_and_help_import_no_torch_training_or_rich():
    """`recolor --help` and the planning API start without torch, the training code, rich or pydantic."""
    script = (
        "import sys\n"
        "import recolor.planning\n"
        "planning = {m for m in sys.modules if m.split('.')[0] in ('torch', 'rich') or m.startswith('recolor.training')}\n"
        "import recolor.cli\n"
        "sys.argv = ['recolor', '--help']\n"
        "try:\n"
        "    recolor.cli.app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('torch', 'rich', 'pydantic', 'numpy', 'PIL')}\n"
        "print(sorted(planning), sorted(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[] []"
    assert "colorize" in result.stdout and "sample-diverse" in result.stdout
