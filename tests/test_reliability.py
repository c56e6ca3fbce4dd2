"""Issue 13: nothing lost, nothing hangs. One test (or more) per defect; the bad inputs come from tests/corpus.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import corpus
from recolor.checkpoint import CheckpointError, load_checkpoint, load_optimizer_states, save_checkpoint, save_optimizer_states
from recolor.cli import app
from recolor.imageio import ImageReadError, list_image_files, decode_photo, save_image
from recolor.inference import Colorizer
from recolor.registry import get_model_spec, list_models

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "num_downs": 5, "image_size": 32}
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def records(result) -> dict[str, dict]:
    """JSON records by input file name."""
    return {Path(r["input"]).name: r for r in map(json.loads, (line for line in result.stdout.splitlines() if line.startswith("{")))}


def clean_exit(result, code: int) -> None:
    """The exit code, and no Python traceback (typer's Exit is a SystemExit)."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def recolor_process(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "recolor.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


# --- 1. no input is ever written unless --in-place ------------------------------------------------

def test_colorize_into_the_input_folder_never_replaces_another_input(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "x.jpg", photos["coffee"])
    corpus.grey_photo(folder / "x.png", photos["chelsea"])
    before = (folder / "x.png").read_bytes()
    # files named one by one (an input *folder* as -o is refused outright: tests/test_reliability_cli.py)
    result = cli("colorize", folder / "x.jpg", folder / "x.png", "-o", folder, "--format", "png", "--overwrite", "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    clean_exit(result, 1)
    assert (folder / "x.png").read_bytes() == before
    assert records(result)["x.jpg"]["status"] == "error" and "overwrite another input" in records(result)["x.jpg"]["error"]


def test_sample_diverse_into_the_input_folder_never_replaces_another_input(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "p.jpg", photos["coffee"])
    corpus.grey_photo(folder / "p_1.jpg", photos["chelsea"])
    before = (folder / "p_1.jpg").read_bytes()
    result = cli("sample-diverse", folder / "p.jpg", folder / "p_1.jpg", "-o", folder, "-k", "2", "--overwrite", "--model", tiny_pix2pix_checkpoint, "--draws", "4", "-q", "--json")
    clean_exit(result, 1)
    assert (folder / "p_1.jpg").read_bytes() == before
    assert records(result)["p.jpg"]["status"] == "error"


# --- 2. non-finite pixels, weights and colour -------------------------------------------------------

def test_a_nan_pixel_in_a_float_tiff_keeps_the_photos_lightness(tmp_path, tiny_pix2pix_checkpoint):
    source = corpus.float_tiff_with_nan(tmp_path / "ramp.tif")
    out = tmp_path / "out"
    result = cli("colorize", source, "-o", out, "--format", "png", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 0)
    lightness = decode_photo(out / "ramp.png").lightness[0]
    # the ramp's own lightness (about 50 to 90), not the all-black picture one NaN used to give
    assert lightness.mean() > 40 and lightness[:, -1].mean() > lightness[:, 0].mean() + 20


def test_a_nan_weight_fails_the_model_file_with_a_clear_message(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    checkpoint = load_checkpoint(tiny_pix2pix_checkpoint)
    tensors = dict(checkpoint.tensors)
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    poisoned = save_checkpoint(tmp_path / "nan.safetensors", tensors, "pix2pix", checkpoint.config)
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", poisoned, "-q")
    clean_exit(result, 2)
    assert "NaN" in result.output and "nan.safetensors" in result.output
    assert not (tmp_path / "out").exists()


def test_a_model_producing_nan_colour_fails_that_file_only(tmp_path, photos, grey_photo_path, tiny_pix2pix_checkpoint):
    from recolor.pipeline import ColorizeJob, colorize_files

    colorizer = Colorizer.load(tiny_pix2pix_checkpoint, device="cpu")
    forward = colorizer._forward

    def nan_for_dark_photos(x):  # finite weights, but colour that overflows on some inputs
        out = forward(x)
        return torch.where(x.mean(dim=(1, 2, 3), keepdim=True) < -0.5, torch.full_like(out, float("nan")), out)

    colorizer._forward = nan_for_dark_photos
    dark = tmp_path / "dark.png"
    Image.new("L", (32, 32), 5).save(dark)
    jobs = [ColorizeJob(grey_photo_path, tmp_path / "ok.png"), ColorizeJob(dark, tmp_path / "dark_out.png")]
    good, bad = colorize_files(colorizer, jobs, batch_size=2)
    assert good.ok and (tmp_path / "ok.png").is_file()
    assert not bad.ok and "NaN" in bad.error and str(dark) in bad.error and not (tmp_path / "dark_out.png").exists()


# --- 3. a killed sample-diverse leaves no incomplete set behind ---------------------------------

def test_sample_diverse_completes_a_set_that_a_kill_left_partial(tmp_path, photos, tiny_pix2pix_checkpoint):
    source = corpus.grey_photo(tmp_path / "in" / "p.png", photos["coffee"])
    out = tmp_path / "out"
    args = ("sample-diverse", source, "-o", out, "-k", "3", "--model", tiny_pix2pix_checkpoint, "--draws", "6", "-q", "--json")
    clean_exit(cli(*args), 0)
    (out / "p_3.png").unlink()  # killed after 2 of the 3 samples: neither the third nor the sheet
    (out / "p_sheet.png").unlink()
    again = cli(*args)
    clean_exit(again, 0)
    assert records(again)["p.png"]["status"] == "ok"
    assert all((out / name).is_file() for name in ("p_1.png", "p_2.png", "p_3.png", "p_sheet.png"))


# --- 4. resume never mixes an optimiser state with weights of another step ----------------------

def test_optimiser_state_of_another_step_is_refused(tmp_path):
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_optimizer_states(tmp_path / "opt.safetensors", {"g": optimizer.state_dict()}, step=7)
    assert load_optimizer_states(tmp_path / "opt.safetensors", step=7)["g"]["state"]
    with pytest.raises(CheckpointError, match="step 7 but the weights are of step 6"):
        load_optimizer_states(tmp_path / "opt.safetensors", step=6)


def test_a_run_from_before_run_state_files_resumes_and_its_optimisers_of_another_step_are_refused(tmp_path, tiny_photo_folder):
    """Runs written before a checkpoint became one atomic set kept their optimisers in last.optim.safetensors,
    written before the weights: they resume from it, unless a kill between the two writes left it a step ahead."""
    from recolor.data import ColorPhotoDataset
    from recolor.training.loop import CHECKPOINT_NAME, OPTIMIZER_NAME, TrainSettings, Trainer, build_recipe

    def trainer(max_steps):
        spec = get_model_spec("pix2pix")
        config = spec.config({**TINY, "batch_size": 8})
        settings = TrainSettings(out_dir=tmp_path, epochs=5, batch_size=8, workers=0, precision="fp32",
                                 save_every=1, max_steps=max_steps, progress=False, samples=0)
        return Trainer(build_recipe("pix2pix", config, torch.device("cpu")), ColorPhotoDataset(tiny_photo_folder, size=32), None, settings)

    torch.manual_seed(0)
    trainer(2).fit()
    last = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    run_state = tmp_path / last.extra.pop("run_state")
    optimizers = load_optimizer_states(run_state, step=2)
    run_state.unlink()
    save_checkpoint(tmp_path / CHECKPOINT_NAME, last.tensors, "pix2pix", last.config, kind="training", extra=last.extra)  # as written before
    save_optimizer_states(tmp_path / OPTIMIZER_NAME, optimizers, step=3)  # the optimisers of step 3, then killed
    with pytest.raises(CheckpointError, match="optimiser state of step 3 but the weights are of step 2"):
        trainer(4).fit(resume=True)
    save_optimizer_states(tmp_path / OPTIMIZER_NAME, optimizers, step=2)
    assert trainer(3).fit(resume=True)["steps"] == 3
    assert not (tmp_path / OPTIMIZER_NAME).exists()  # the new checkpoint set replaced it


# --- 5. a corrupted checkpoint is detected ---------------------------------------------------------

def test_overwritten_weight_bytes_fail_the_checksum(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    damaged = corpus.overwrite_tensor_bytes(Path(shutil.copy(tiny_pix2pix_checkpoint, tmp_path / "damaged.safetensors")))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(damaged)
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", damaged, "-q")
    clean_exit(result, 2)
    assert "damaged.safetensors: corrupt checkpoint" in result.output


def test_files_written_without_a_checksum_still_load(tmp_path, tiny_pix2pix_checkpoint):
    checkpoint = load_checkpoint(tiny_pix2pix_checkpoint)
    legacy = corpus.crafted_checkpoint(tmp_path / "legacy.safetensors", "pix2pix", checkpoint.config, checkpoint.tensors)
    assert Colorizer.load(legacy, device="cpu").name == "pix2pix"


# --- 6. a named pipe never hangs ---------------------------------------------------------------------

def test_a_named_pipe_among_the_inputs_is_named_and_skipped(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "good.jpg", photos["coffee"])
    corpus.named_pipe(folder / "m.jpg")
    done = recolor_process("colorize", folder, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q", timeout=90)
    assert done.returncode == 1, done.stderr
    assert "m.jpg: not a regular file" in done.stderr and (tmp_path / "out" / "good.jpg").is_file()


def test_evaluate_does_not_hang_on_a_named_pipe(tmp_path, tiny_photo_folder):
    data = tmp_path / "data"
    shutil.copytree(tiny_photo_folder, data)
    corpus.named_pipe(data / "m.jpg")
    done = recolor_process("evaluate", "--data", data, "--predictions", f"truth={tiny_photo_folder}", "--metric", "psnr", "-q", timeout=90)  # no --size: the header scan used to block
    assert done.returncode == 0, done.stderr


# --- 7./8. symlink loops -------------------------------------------------------------------------------

def test_a_file_symlink_loop_is_one_error_and_the_batch_goes_on(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "good.jpg", photos["coffee"])
    corpus.symlink_loop(folder / "loop.jpg")
    result = cli("colorize", folder, folder / "loop.jpg", "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 1)
    assert "loop.jpg: symlink loop" in result.output and (tmp_path / "out" / "good.jpg").is_file()


def test_a_folder_link_back_up_is_walked_once(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "a.jpg", photos["coffee"])
    corpus.grey_photo(folder / "sub" / "b.jpg", photos["chelsea"])
    corpus.folder_loop(folder / "sub")
    assert sorted(p.name for p in list_image_files(folder)) == ["a.jpg", "b.jpg"]
    result = cli("colorize", folder, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 0)
    assert len([p for p in (tmp_path / "out").rglob("*") if p.is_file()]) == 2


# --- 9. paths go through rich unharmed -----------------------------------------------------------------

def test_paths_with_markup_and_newlines_are_printed_as_they_are(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    for name in ("photo [draft].jpg", "bad [/x].jpg", "new\nline.jpg"):
        corpus.corrupt_file(folder / name)
    corpus.grey_photo(folder / "zz good.jpg", photos["coffee"])
    out = tmp_path / "out [/y]"
    result = cli("colorize", folder, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 1)
    assert "photo [draft].jpg" in result.output and "bad [/x].jpg" in result.output and "new\\nline.jpg" in result.output
    assert "1 colorized, 0 skipped, 3 failed" in result.output and "out [/y]" in result.output
    assert (out / "zz good.jpg").is_file()


# --- 10. untrusted model files --------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ({"ngf": 100000}, "out of range"), ({"ngf": "64"}, "expected a finite number"), ({"ngf": 64.5}, "expected an integer"), ({"ngf": -4}, "out of range"),
    ({"image_size": 65536}, "out of range"), ({"norm": 3}, "expected str"), ({"dropout": "x"}, "expected a finite number"),
])
def test_bad_config_values_in_a_model_file_are_named_and_refused(tmp_path, grey_photo_path, override, message):
    crafted = corpus.crafted_checkpoint(tmp_path / "crafted.safetensors", "pix2pix", {**TINY, **override})
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", crafted, "-q")
    clean_exit(result, 2)
    assert "crafted.safetensors" in result.output and message in result.output


def test_a_bad_training_value_in_a_model_file_is_inert_at_inference_and_refused_by_training(tmp_path, grey_photo_path, tiny_photo_folder):
    # inference rebuilds the network from its architecture keys only; training reads the rest, checked in full
    spec = get_model_spec("pix2pix")
    tensors = spec.build(spec.architecture_config(TINY)).state_dict()
    crafted = corpus.crafted_checkpoint(tmp_path / "crafted.safetensors", "pix2pix", {**TINY, "betas": "x"}, tensors)
    clean_exit(cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", crafted, "-q"), 0)
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--init-from", crafted, "--max-steps", "1", "-q")
    clean_exit(result, 2)
    assert "crafted.safetensors" in result.output and "config 'betas': expected a list" in result.output


def test_a_config_that_does_not_fit_the_tensors_is_refused_before_building(tmp_path, monkeypatch):
    spec = get_model_spec("pix2pix")
    built_for_real = []
    original = spec.build

    def recording_build(config):
        built_for_real.append(torch.empty(0).device.type != "meta")
        return original(config)

    monkeypatch.setitem(spec.__dict__, "build", recording_build)
    crafted = corpus.crafted_checkpoint(tmp_path / "big.safetensors", "pix2pix", {"ngf": 200})  # 508 bytes asking for 2 GB
    with pytest.raises(CheckpointError, match="big.safetensors: tensors do not fit"):
        Colorizer.load(crafted, device="cpu")
    assert built_for_real and not any(built_for_real)  # built on the meta device only: no memory spent


@pytest.fixture
def no_tensor_read(monkeypatch):
    """Loading a model file reads its tensors only once the header passed: a file refused from its
    header alone never reaches this (a sparse file's gigabytes of zeros would be read until killed)."""
    import recolor.pretrained

    def refuse(path):
        raise CheckpointError(f"{path}: its tensors were read")

    monkeypatch.setattr(recolor.pretrained, "load_checkpoint", refuse)


@pytest.mark.parametrize("num_downs", [12, 14, 20, 32])
def test_a_consistent_file_asking_for_huge_inputs_is_refused(tmp_path, grey_photo_path, no_tensor_read, num_downs):
    # a U-Net of 12 levels takes multiples of 4096 px, whatever image_size the file states; each level's few weights are real
    spec = get_model_spec("pix2pix")
    config = spec.architecture_config({"ngf": 1, "num_downs": num_downs, "image_size": 32})
    crafted = corpus.crafted_checkpoint(tmp_path / "deep.safetensors", "pix2pix", config, spec.build(config).state_dict())
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", crafted, "-q")
    clean_exit(result, 2)
    assert len(result.output.strip().splitlines()) == 1
    assert "deep.safetensors: image_size 32 does not fit its network, which takes multiples of" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, message", [
    ("20 GB of zeros", "its tensors declare 18.6 GiB, more than the 2 GiB a model file may hold"),
    ("217M parameters", "its network has 217,"),
    ("5 GiB a photo", "its layers' outputs for one 2048 px photo take"),
])
def test_a_file_declaring_too_much_is_refused_from_its_header(tmp_path, grey_photo_path, no_tensor_read, case, message):
    path = tmp_path / "big.safetensors"
    if case == "20 GB of zeros":  # a tiny consistent generator, and a critic of 20 GB that no one wrote
        tensors = {f"generator.{key}": value for key, value in corpus.meta_generator_state("pix2pix", TINY).items()}
        tensors["discriminator.weight"] = torch.empty(5 * 10**9, device="meta")
        corpus.sparse_checkpoint(path, "pix2pix", TINY, tensors, kind="training")
    elif case == "217M parameters":  # pix2pix twice as wide as its default, in fp16: 435 MB declared
        config = {"ngf": 128, "image_size": 256}
        corpus.sparse_checkpoint(path, "pix2pix", config, corpus.meta_generator_state("pix2pix", config, torch.float16))
    else:  # within the parameter bound (122M), but its layers' outputs for one photo at 2048 px take 4.8 GiB
        config = {"ngf": 96, "image_size": 2048}
        corpus.sparse_checkpoint(path, "pix2pix", config, corpus.meta_generator_state("pix2pix", config, torch.float16))
    assert path.stat().st_blocks * 512 < 2**20  # nothing on disk
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", path, "-q")
    clean_exit(result, 2)
    assert len(result.output.strip().splitlines()) == 1
    assert "big.safetensors: " + message in result.output


def test_every_shipped_weights_file_and_default_config_passes_the_checks(tmp_path):
    from recolor.checkpoint import read_checkpoint_header
    from recolor.inference import checked_model

    from recolor.model_cost import check_input_cost

    for spec in list_models():
        assert spec.config(spec.default_config) == spec.default_config
        config = spec.architecture_config()
        check_input_cost(spec.meta_network(config), config)  # within the bounds, and runs on the meta device
    shipped = sorted((ROOT / "weights").glob("*.safetensors"))
    for path in shipped:
        spec, config = checked_model(read_checkpoint_header(path))
        assert spec.name == path.stem


def test_train_refuses_a_bad_override_in_one_line(tmp_path, tiny_photo_folder):
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--set", "ngf=-4", "--max-steps", "1", "-q")
    clean_exit(result, 2)
    assert "config 'ngf': -4 is out of range" in result.output


def test_train_names_the_checkpoint_whose_config_is_bad(tmp_path, tiny_photo_folder):
    crafted = corpus.crafted_checkpoint(tmp_path / "crafted.safetensors", "pix2pix", {**TINY, "ngf": -4})
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--init-from", crafted, "--max-steps", "1", "-q")
    clean_exit(result, 2)
    assert "crafted.safetensors: config 'ngf': -4 is out of range" in result.output


# --- 11. ICC profiles -------------------------------------------------------------------------------------

def test_a_non_rgb_icc_profile_is_not_copied_to_the_rgb_output(tmp_path, photos, tiny_pix2pix_checkpoint):
    source = corpus.grey_jpeg_with_lab_profile(tmp_path / "lab.jpg", photos["coffee"])
    assert Image.open(source).info.get("icc_profile")
    result = cli("colorize", source, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 0)
    assert not Image.open(tmp_path / "out" / "lab.jpg").info.get("icc_profile")


def test_an_rgb_icc_profile_is_kept(tmp_path, photos, tiny_pix2pix_checkpoint):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(photos["coffee"]).resize((64, 48)).save(tmp_path / "srgb.jpg", icc_profile=profile)
    clean_exit(cli("colorize", tmp_path / "srgb.jpg", "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    assert Image.open(tmp_path / "out" / "srgb.jpg").info.get("icc_profile") == profile


# --- 12. unreadable sub-folders -------------------------------------------------------------------------

def test_an_unreadable_sub_folder_is_named_and_fails_the_run(tmp_path, photos, tiny_pix2pix_checkpoint, monkeypatch):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "good.jpg", photos["coffee"])
    locked = folder / "locked"
    corpus.grey_photo(locked / "hidden.jpg", photos["chelsea"])
    scandir = os.scandir

    def denying_scandir(path="."):  # chmod 000 does not stop root, so the refusal is simulated
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denying_scandir)
    result = cli("colorize", folder, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 1)
    assert f"{locked}: cannot read folder (Permission denied)" in result.output
    assert "1 colorized, 0 skipped, 1 failed" in result.output


# --- 13. temporary files ------------------------------------------------------------------------------------

def test_stale_temporary_files_of_dead_runs_are_removed(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    out = tmp_path / "out"
    stale = corpus.stale_temp_file(out, "astronaut_grey.jpg", corpus.dead_pid())
    live = corpus.stale_temp_file(out, "other.jpg", os.getpid())  # a run that is still writing
    foreign = corpus.foreign_temp_file(out, ".notes.abcdefgh.tmp")  # a user's file, shaped like mkstemp's names, hours old
    clean_exit(cli("colorize", grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    assert not stale.exists() and live.exists()
    assert foreign.exists()  # without recolor's mark: never removed (issue 29, item 4)


def test_a_full_disk_fails_the_file_and_a_rerun_redoes_it(tmp_path, photos, tiny_pix2pix_checkpoint):
    """Issue 29, item 5: a write that does not fit (a file-size limit stands in for a full disk) is that
    file's error, and nothing is left at its name, so the next run colorizes it instead of skipping it."""
    import resource

    folder, out = tmp_path / "in", tmp_path / "out"
    # its colorization, about 40 KB, is one write() of Pillow's JPEG encoder, so only a check of what
    # reached the file can see it cut short
    corpus.noise_photo(folder / "noise.jpg", size=(200, 200))
    corpus.grey_photo(folder / "small.jpg", photos["coffee"])
    args = [sys.executable, "-m", "recolor.cli", "colorize", str(folder), "-o", str(out), "--model", str(tiny_pix2pix_checkpoint), "-q", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # noqa: E731 - Python ignores SIGXFSZ: writes fail with EFBIG
    full = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, preexec_fn=limit)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in map(json.loads, full.stdout.splitlines())}
    assert statuses == {"noise.jpg": "error", "small.jpg": "ok"}
    assert sorted(p.name for p in out.iterdir()) == ["small.jpg"]  # no truncated noise.jpg, no temporary
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in map(json.loads, again.stdout.splitlines())}
    assert statuses == {"noise.jpg": "ok", "small.jpg": "skipped"}
    with Image.open(out / "noise.jpg") as written:
        written.load()  # whole: it decodes


def test_sigterm_removes_the_temporary_file_of_a_write(tmp_path):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from recolor.cli import handle_termination\n"
        "from recolor.imageio.atomic import _atomic_file\n"
        "handle_termination()\n"
        "with _atomic_file(Path(sys.argv[1])) as handle:\n"
        "    handle.write(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.png")], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "writing"
    child.terminate()
    child.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    assert synced and (tmp_path / "x.png").is_file()


# --- 14. train: one line for a full disk and for weights-only files ----------------------------------------

def test_train_on_a_full_disk_says_so_in_one_line(tmp_path, tiny_photo_folder, monkeypatch):
    import recolor.training.checkpointing as checkpointing

    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpointing, "write_run_state", full_disk)
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32",
                 "-b", "8", "--max-steps", "1", "--workers", "0", "--device", "cpu", "-q")
    clean_exit(result, 1)
    assert "No space left on device" in result.output


def test_a_diverged_training_run_exits_1_in_one_line(tmp_path, tiny_photo_folder, monkeypatch):
    from recolor.training.pix2pix import Pix2PixRecipe

    monkeypatch.setattr(Pix2PixRecipe, "train_step", lambda self, batch: {"recon": float("nan")})
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32",
                 "-b", "8", "--max-steps", "2", "--workers", "0", "--device", "cpu", "-q")
    clean_exit(result, 1)  # not 2: nothing was wrong with the command
    assert "training diverged at step 1" in result.output and len(result.output.strip().splitlines()) == 1


def test_resuming_from_exported_weights_says_so_in_one_line(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_pix2pix_checkpoint, run / "last.safetensors")
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", run, "--max-steps", "1", "--workers", "0", "--device", "cpu", "--resume", "-q")
    clean_exit(result, 2)
    assert "exported weights, not a training checkpoint" in result.output


# --- 15. evaluate --predictions refuses predictions of another size ----------------------------------------

def test_a_prediction_of_another_size_is_refused(tmp_path, tiny_photo_folder):
    from recolor.evaluate import EvalSettings, evaluate

    predictions = tmp_path / "pred"
    shutil.copytree(tiny_photo_folder, predictions)
    thumbnail = next(predictions.rglob("*.png"))
    Image.open(thumbnail).resize((40, 40)).save(thumbnail)
    result = evaluate(EvalSettings(data=tiny_photo_folder, predictions=[f"p={predictions}"], metrics=["psnr"], size=16, device="cpu", report_samples=0))
    assert result.info["photos"] == 23
    assert any("size differs from the ground truth" in note and thumbnail.name in note for note in result.notes)


# --- 16. messages that say what happened ------------------------------------------------------------------

def test_permission_denied_is_not_called_corrupt(tmp_path, photos, monkeypatch):
    path = corpus.grey_photo(tmp_path / "locked.jpg", photos["coffee"])
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate the refusal
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == path else access(p, mode, *a, **k))
    with pytest.raises(ImageReadError, match="locked.jpg: permission denied"):
        decode_photo(path)


@pytest.mark.skipif(shutil.which("gs") is not None, reason="Ghostscript is installed")
def test_a_missing_ghostscript_is_not_called_corrupt(tmp_path):
    with pytest.raises(ImageReadError, match="needs Ghostscript"):
        decode_photo(corpus.eps_file(tmp_path / "figure.eps"))


def test_pillow_warnings_do_not_leak(tmp_path):
    path = corpus.jpeg_with_bad_exif(tmp_path / "exif.jpg")
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are (a caller's "always" would show them)
        decode_photo(path)
    assert [str(w.message) for w in caught] == []


def test_sample_diverse_takes_two_photos_of_the_same_stem(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "p.jpg", photos["coffee"])
    corpus.grey_photo(folder / "p.png", photos["chelsea"])
    out = tmp_path / "out"
    result = cli("sample-diverse", folder, "-o", out, "-k", "2", "--model", tiny_pix2pix_checkpoint, "--draws", "4", "-q", "--json")
    clean_exit(result, 0)
    found = records(result)
    assert found["p.jpg"]["status"] == found["p.png"]["status"] == "ok"
    assert len({found["p.jpg"]["sheet"], found["p.png"]["sheet"]}) == 2


# --- 17. augmentation is seeded ------------------------------------------------------------------------------

def test_training_crops_and_flips_depend_only_on_seed_epoch_and_index(tiny_photo_folder):
    import random

    from recolor.data import ColorPhotoDataset, EpochIndex

    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True, scale=(1.0, 2.0))
    random.seed(1)
    first = data[EpochIndex(5, seed=0, epoch=2)]["rgb"]
    random.seed(2)
    assert torch.equal(data[EpochIndex(5, seed=0, epoch=2)]["rgb"], first)
    assert not all(torch.equal(data[EpochIndex(5, seed=0, epoch=e)]["rgb"], first) for e in range(3, 8))


# --- 18. multi-frame images and GIF transparency --------------------------------------------------------------

def test_a_multi_frame_gif_is_noted_and_a_transparent_gif_keeps_its_transparency(tmp_path, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    corpus.animated_gif(folder / "anim.gif")
    corpus.transparent_gif(folder / "clear.gif")
    out = tmp_path / "out"
    result = cli("colorize", folder, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 0)
    with Image.open(out / "anim.gif") as animated:  # an animated GIF is a film: every frame, still a GIF (issue 26)
        assert animated.n_frames == 3
    result = cli("colorize", folder / "anim.gif", "-o", out, "--format", "png", "--model", tiny_pix2pix_checkpoint, "-q")
    clean_exit(result, 0)
    assert "anim.gif: 3 frames, only the first is colorized" in result.output  # as a photo, only its first frame
    alpha = np.asarray(Image.open(out / "clear.gif").convert("RGBA"))[..., 3]
    assert alpha[:8].max() == 0 and alpha[8:].min() == 255


# --- 17. issue 29: inputs that gave silently wrong output ----------------------------------------------------

def _ramp_tiffs(folder: Path) -> dict[str, Path]:
    """The same grey ramp as float and 32-bit TIFF samples, one file per rule of README's "Inputs"."""
    ramp = corpus.grey_ramp()
    samples = {
        "float_0_1": (ramp / 255).astype(np.float32),
        "float_signed": (ramp / 127.5 - 1).astype(np.float32),  # -1..1: black -1, white 1
        "float_0_255": ramp.astype(np.float32),
        "float_0_65535": (ramp * 257.0).astype(np.float32),
        "uint32": ramp.astype(np.uint32) * 16843009,  # 255 * 16843009 = 2^32 - 1
        "int32": ramp.astype(np.int32) * 8421504,  # about 2^31 / 255
    }
    return {name: corpus.tiff_of_samples(folder / f"{name}.tif", values) for name, values in samples.items()}


def test_float_and_32_bit_tiffs_keep_the_photos_lightness(tmp_path, tiny_pix2pix_checkpoint):
    reference = decode_photo(corpus.grey_photo(tmp_path / "ramp.png", corpus.grey_ramp(), size=(64, 32))).lightness
    sources = _ramp_tiffs(tmp_path / "in")
    for name, source in sources.items():
        assert (decode_photo(source).lightness - reference).abs().max() < 0.1, name
    out = tmp_path / "out"
    clean_exit(cli("colorize", tmp_path / "in", "-o", out, "--format", "png", "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    for name in sources:  # the colorization keeps the lightness (up to the gamut's clipping of the colour)
        assert (decode_photo(out / f"{name}.png").lightness - reference).abs().mean() < 2, name


def test_a_float_tiff_beyond_every_scale_is_stretched_and_a_dark_one_stays_dark(tmp_path):
    ramp = corpus.grey_ramp().astype(np.float32)
    dark = decode_photo(corpus.tiff_of_samples(tmp_path / "dark.tif", ramp / 255 * 0.2)).lightness  # 0..0.2 of 0..1: not stretched
    assert dark.max() < 50
    wide = decode_photo(corpus.tiff_of_samples(tmp_path / "wide.tif", ramp * 1000 - 90_000)).lightness  # no standard scale holds it
    assert wide.min() < 1 and wide.max() > 99


@pytest.mark.parametrize("compression", ["group3", "group4"])
def test_a_bilevel_fax_tiff_is_colorized_into_a_tiff(tmp_path, compression, tiny_pix2pix_checkpoint):
    source = corpus.bilevel_tiff(tmp_path / "in" / f"fax_{compression}.tif", compression)
    out = tmp_path / "out"
    clean_exit(cli("colorize", source, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    with Image.open(out / source.name) as written:
        written.load()
        assert written.mode == "RGB" and written.size == (64, 32)
        assert written.info["compression"] == "tiff_adobe_deflate"  # lossless, as the fax was; CCITT holds black and white only


def test_premultiplied_alpha_reads_in_the_api_and_on_the_command_line(tmp_path, tiny_pix2pix_checkpoint):
    colorizer = Colorizer.load(tiny_pix2pix_checkpoint, device="cpu")
    rgba = np.dstack([np.stack([corpus.grey_ramp()] * 3, axis=-1), np.full((32, 64), 128, np.uint8)])
    for image in (Image.fromarray(rgba, mode="RGBA").convert("RGBa"), Image.fromarray(rgba[..., [0, 3]], mode="LA").convert("La")):
        result = colorizer.colorize(image)
        assert result.mode == "RGBA" and np.asarray(result)[..., 3].min() == 128, image.mode
    source = corpus.premultiplied_alpha_tiff(tmp_path / "in" / "associated.tif")
    assert Image.open(source).mode == "La"
    clean_exit(cli("colorize", source, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    with Image.open(tmp_path / "out" / "associated.tif") as written:
        assert written.mode == "RGBA"


def test_sample_diverse_goes_on_past_a_premultiplied_alpha_file(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    corpus.premultiplied_alpha_tiff(folder / "associated.tif")
    corpus.grey_photo(folder / "plain.jpg", photos["coffee"])
    result = cli("sample-diverse", folder, "-o", tmp_path / "out", "-k", "2", "--draws", "4", "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    clean_exit(result, 0)
    assert {name: r["status"] for name, r in records(result).items()} == {"associated.tif": "ok", "plain.jpg": "ok"}


def test_one_nan_photo_fails_alone_in_a_diverse_batch(tmp_path, photos, tiny_pix2pix_checkpoint):
    from recolor.diverse import load_sampler
    from recolor.diverse_files import sample_jobs
    from recolor.planning import plan_sample_diverse

    folder = tmp_path / "in"
    corpus.grey_photo(folder / "a.jpg", photos["coffee"])
    Image.new("L", (32, 32), 5).save(folder / "dark.png")
    corpus.grey_photo(folder / "c.jpg", photos["chelsea"])
    sampler = load_sampler(tiny_pix2pix_checkpoint, device="cpu", draws=4)
    draw = sampler.draw

    def nan_for_dark_photos(x, count):  # finite weights, but colour that overflows on some inputs
        out = draw(x, count)
        return torch.full_like(out, float("nan")) if float(x.mean()) < -0.5 else out

    sampler.draw = nan_for_dark_photos
    plan = plan_sample_diverse([str(folder)], tmp_path / "out", 2)
    outcomes = {Path(r["input"]).name: r for r in sample_jobs(sampler, plan.jobs, 2, "random", seed=0)}
    assert [outcomes[name]["status"] for name in ("a.jpg", "dark.png", "c.jpg")] == ["ok", "error", "ok"]
    assert "NaN" in outcomes["dark.png"]["error"] and "dark.png" in outcomes["dark.png"]["error"]


def test_sample_diverse_keeps_16_bits_and_takes_max_pixels(tmp_path, tiny_pix2pix_checkpoint):
    import png

    source = tmp_path / "in" / "scan.png"
    source.parent.mkdir()
    Image.fromarray(corpus.grey_ramp().astype(np.uint16) * 257).save(source)  # 16-bit grey
    out = tmp_path / "out"
    clean_exit(cli("sample-diverse", source, "-o", out, "-k", "2", "--draws", "4", "--model", tiny_pix2pix_checkpoint, "-q"), 0)
    for sample in ("scan_1.png", "scan_2.png"):
        assert png.Reader(filename=str(out / sample)).read()[3]["bitdepth"] == 16, sample
    refused = cli("sample-diverse", source, "-o", tmp_path / "small", "-k", "2", "--draws", "4", "--model", tiny_pix2pix_checkpoint,
                  "--max-pixels", "1000", "-q")
    clean_exit(refused, 1)
    assert "too large (over 1,000 pixels" in refused.output


def test_rgb_to_lab_refuses_a_four_channel_tensor_in_one_clear_error():
    from recolor.color import lab_to_rgb, rgb_to_lab, rgb_to_lightness

    for convert in (rgb_to_lab, lab_to_rgb, rgb_to_lightness):
        with pytest.raises(ValueError, match=r"expected a tensor of shape \(\.\.\., 3, H, W\), got \(4, 8, 8\)"):
            convert(torch.rand(4, 8, 8))
