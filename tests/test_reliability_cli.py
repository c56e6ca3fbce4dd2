"""Issue 29: the command line loses nothing and prints nothing raw (empty inputs, multi-frame files
under --in-place, control characters in names, out-of-range options, links, long names)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import corpus
from recolor.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *words: str) -> str:
    """Exit 2 in one line (no traceback) that holds ``words``; the line."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# --- A. an empty input is not the working folder --------------------------------------------------

@pytest.mark.parametrize("empty", ["", " ", "\t"])
@pytest.mark.parametrize("command", [["colorize", "--in-place"], ["colorize"], ["sample-diverse", "-k", "2"]])
def test_an_empty_input_is_refused_and_nothing_is_written(tmp_path, photos, tiny_pix2pix_checkpoint, monkeypatch, empty, command):
    corpus.grey_photo(tmp_path / "mine.jpg", photos["coffee"])
    corpus.grey_photo(tmp_path / "deep" / "other.jpg", photos["chelsea"])
    before = tree_bytes(tmp_path)
    monkeypatch.chdir(tmp_path)
    refused(cli(command[0], empty, *command[1:], "--model", tiny_pix2pix_checkpoint, "-q"), "empty")
    assert tree_bytes(tmp_path) == before


# --- B. --in-place never drops pages --------------------------------------------------------------

@pytest.mark.parametrize("make", [corpus.animated_gif, corpus.multi_page_tiff], ids=["gif", "tiff"])
def test_in_place_leaves_a_multi_frame_file_whole(tmp_path, photos, tiny_pix2pix_checkpoint, make):
    multi = make(tmp_path / f"pages{'.gif' if make is corpus.animated_gif else '.tif'}")
    single = corpus.grey_photo(tmp_path / "single.png", photos["coffee"])
    before, single_before = multi.read_bytes(), single.read_bytes()
    result = cli("colorize", multi, single, "--in-place", "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 1, result.output
    assert multi.read_bytes() == before
    assert single.read_bytes() != single_before  # the others are still done
    assert f"{multi}: 3 frames" in result.output and "left as it is" in result.output


# --- 13. control characters in names are printed as escapes --------------------------------------

def test_terminal_escapes_in_a_file_name_are_printed_escaped(tmp_path, tiny_pix2pix_checkpoint):
    bad = corpus.name_with_terminal_escape(tmp_path / "in")
    for command in (["colorize", bad, "-o", tmp_path / "out"], ["sample-diverse", bad, "-k", "2", "-o", tmp_path / "div", "--draws", "4"]):
        result = cli(*command, "--model", tiny_pix2pix_checkpoint, "-q")
        assert result.exit_code == 1, result.output
        assert not any(char in result.output for char in "\x1b\r\u202e"), repr(result.output)
        assert "bad\\x1b[2J\\x1b[1K\\r\\u202ename.jpg" in result.output


def test_the_stderr_console_escapes_controls_in_any_message(capsys):
    from recolor.commands._shared import console

    console(stderr=True).print("step 3\x1b[2K\rdone ok\nnext")
    assert capsys.readouterr().err == "step 3\\x1b[2K\\rdone ok\nnext\n"


# --- 15. outputs never among the inputs -----------------------------------------------------------

@pytest.mark.parametrize("command", [["sample-diverse", "-k", "2", "--draws", "4"], ["colorize"]])
def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, photos, tiny_pix2pix_checkpoint, command):
    folder = tmp_path / "in"
    corpus.grey_photo(folder / "p.jpg", photos["coffee"])
    before = tree_bytes(folder)
    refused(cli(command[0], folder, *command[1:], "-o", folder, "--model", tiny_pix2pix_checkpoint, "-q"), "input folder", "-o")
    assert tree_bytes(folder) == before


# --- 14. options out of range are refused, one line, before any work -----------------------------

def test_an_unwritable_report_folder_is_refused_before_evaluating(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    refused(cli("evaluate", "--data", tiny_photo_folder, "--model", tiny_pix2pix_checkpoint, "--report", blocker / "report", "-q"), "a file")


@pytest.mark.parametrize("options, words", [(["--size", "0"], "too small"), (["--size", "100000"], "too large"), (["--size", "2048"], "too large"),
                                            (["--seed", str(2**70)], "out of range"), (["--seed", "-1"], "out of range")])
def test_evaluate_refuses_sizes_and_seeds_out_of_range(tiny_photo_folder, tiny_pix2pix_checkpoint, options, words):
    refused(cli("evaluate", "--data", tiny_photo_folder, "--model", tiny_pix2pix_checkpoint, *options, "-q"), options[0], words)


def test_evaluation_settings_refuse_a_batch_size_below_one():
    from recolor.evaluate import EvalSettings, EvaluationError

    for batch_size in (0, -3):
        with pytest.raises(EvaluationError, match="batch-size"):
            EvalSettings(data=Path("."), batch_size=batch_size).check()


@pytest.mark.parametrize("batch_size", [0, -1])
def test_colorize_files_refuses_a_batch_size_below_one(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, batch_size):
    from recolor import Colorizer
    from recolor.pipeline import ColorizeJob, colorize_files

    colorizer = Colorizer.load(tiny_pix2pix_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        list(colorize_files(colorizer, [ColorizeJob(grey_photo_path, tmp_path / "out.jpg")], batch_size=batch_size))
    assert not (tmp_path / "out.jpg").exists()


@pytest.mark.parametrize("minutes", ["-1", "0"])
def test_train_refuses_a_time_budget_of_no_time(tmp_path, tiny_photo_folder, minutes):
    refused(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--max-minutes", minutes, "-q"), "--max-minutes")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["sample-diverse", "PHOTO", "-k", "2", "--method", "random", "--draws", "4"], ["train", "--model", "pix2pix"]])
def test_a_seed_out_of_range_is_refused_not_failed_per_photo(tmp_path, grey_photo_path, tiny_photo_folder, tiny_pix2pix_checkpoint, command):
    args = [grey_photo_path if arg == "PHOTO" else arg for arg in command]
    if command[0] == "train":
        args += ["--data", tiny_photo_folder, "--out", tmp_path / "run"]
    else:
        args += ["--model", tiny_pix2pix_checkpoint, "-o", tmp_path / "out"]
    refused(cli(*args, "--seed", 2**70, "-q"), "--seed", "out of range")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


# --- 15. train checks its paths and its environment before training ---------------------------------

def test_a_model_files_unfit_size_names_the_file(tmp_path, tiny_photo_folder):
    crafted = corpus.model_file_with_an_unfit_size(tmp_path / "crafted.safetensors")
    refused(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--init-from", crafted, "--max-steps", "1", "-q"),
            str(crafted), "multiples of 32")


def test_world_size_without_torchrun_is_explained(tmp_path, tiny_photo_folder, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    refused(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--max-steps", "1", "-q"), "WORLD_SIZE=2", "torchrun")


def test_an_unwritable_export_path_is_refused_before_training(tmp_path, tiny_photo_folder):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    refused(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--export", blocker / "model.safetensors",
                "--max-steps", "1", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "-q"), "--export")
    assert not (tmp_path / "run").exists()  # nothing trained


def test_a_run_folder_that_is_a_file_is_refused(tmp_path, photos, tiny_photo_folder):
    photo = corpus.grey_photo(tmp_path / "photo.jpg", photos["coffee"])
    before = photo.read_bytes()
    line = refused(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", photo, "--max-steps", "1", "-q"), "--out", "is a file")
    assert "last checkpoint" not in line and photo.read_bytes() == before


# --- 15. long names and links ---------------------------------------------------------------------

@pytest.mark.parametrize("in_place", [False, True])
def test_a_250_byte_file_name_is_colorized(tmp_path, photos, tiny_pix2pix_checkpoint, in_place):
    photo = corpus.long_named_photo(tmp_path / "in", photos["coffee"])
    before = photo.read_bytes()
    out = tmp_path / "out"
    result = cli("colorize", photo, *(["--in-place"] if in_place else ["-o", out]), "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 0, result.output
    written = photo if in_place else out / photo.name
    assert written.read_bytes() != before and not [p for p in written.parent.iterdir() if p.name.endswith(".tmp")]


def test_in_place_on_a_link_colorizes_its_target_and_keeps_the_link(tmp_path, photos, tiny_pix2pix_checkpoint):
    target = corpus.grey_photo(tmp_path / "photos" / "real.jpg", photos["coffee"])
    link = tmp_path / "album" / "link.jpg"
    link.parent.mkdir()
    link.symlink_to(target)
    before = target.read_bytes()
    result = cli("colorize", link, "--in-place", "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != before
    assert json.loads(result.stdout.splitlines()[0])["output"] == str(target.resolve())
