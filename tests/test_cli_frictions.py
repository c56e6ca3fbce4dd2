"""Issue 28: what a new user trips over on the command line (items 2, 3, 6, 7, 10)."""
from __future__ import annotations

import io
import re

import pytest
import torch
from typer.testing import CliRunner

import corpus
from recolor.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --- 2. a rerun that does nothing says why ---------------------------------------------------------

def test_a_rerun_says_why_it_skipped_and_claims_no_model(tmp_path, photos, tiny_pix2pix_checkpoint):
    photo = corpus.grey_photo(tmp_path / "old.jpg", photos["coffee"])
    out = tmp_path / "out"
    assert cli("colorize", photo, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q").exit_code == 0
    result = cli("colorize", photo, "-o", out, "--model", tiny_pix2pix_checkpoint, "--chroma", "2", "-q")
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "0 colorized, 1 skipped (outputs exist; --overwrite replaces them)" in summary
    assert " with " not in summary  # nothing was made with the model


# --- 3. train never replaces an earlier run silently ----------------------------------------------

def test_train_refuses_a_folder_holding_an_earlier_run(tmp_path, tiny_photo_folder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 12}\n')
    line = one_error_line(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", out, "--max-steps", "1", "-q"))
    assert "--resume" in line and "--overwrite" in line
    assert (out / "log.jsonl").read_text() == '{"step": 12}\n'
    one_error_line(cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", out, "--resume", "--overwrite", "-q"))


def test_train_overwrite_starts_afresh(tmp_path, tiny_photo_folder):
    out = tmp_path / "run"
    (out / "samples").mkdir(parents=True)
    (out / "log.jsonl").write_text('{"step": 12, "earlier": true}\n')
    (out / "samples" / "epoch_009.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    result = cli("train", "--model", "pix2pix", "--data", tiny_photo_folder, "--out", out, "--overwrite", "--max-steps", "1", "--size", "32",
                 "--set", "ngf=8", "--set", "num_downs=5", "-b", "4", "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    assert "earlier" not in (out / "log.jsonl").read_text()
    assert not (out / "samples" / "epoch_009.png").exists() and (out / "notes.txt").read_text() == "mine"


# --- 6. Ctrl-C says how far the run got --------------------------------------------------------------

def test_ctrl_c_in_colorize_says_what_is_done_and_how_to_go_on(tmp_path, photos, tiny_pix2pix_checkpoint, monkeypatch):
    import recolor.pipeline

    real = recolor.pipeline.colorize_files

    def interrupted(colorizer, jobs, **options):
        for number, outcome in enumerate(real(colorizer, jobs, **options)):
            if number == 1:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(recolor.pipeline, "colorize_files", interrupted)
    folder = tmp_path / "in"
    for name in ("a", "b", "c"):
        corpus.grey_photo(folder / f"{name}.jpg", photos["coffee"])
    result = cli("colorize", folder, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == "stopped: 1 of 3 done; run the same command again to continue"


def test_ctrl_c_in_train_names_the_saved_step(tmp_path, tiny_photo_folder, monkeypatch):
    from recolor.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from recolor.training import loop

    def saves_step_9_then_interrupted(self, resume=False):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.out_dir / CHECKPOINT_NAME, {"w": torch.zeros(1)}, "pix2pix", self.recipe.config, kind="training", extra={"trainer": {"step": 9}})
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "fit", saves_step_9_then_interrupted)
    args = ["train", "--model", "pix2pix", "--data", tiny_photo_folder, "--size", "32", "--set", "ngf=8", "--set", "num_downs=5", "-b", "4", "-q"]
    result = cli(*args, "--out", tmp_path / "run")
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == "stopped: saved at step 9; continue with --resume"

    def interrupted_at_once(self, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "fit", interrupted_at_once)
    result = cli(*args, "--out", tmp_path / "fresh")
    assert result.exit_code == 130 and "nothing saved" in result.output


# --- 7. -o = the input folder: see tests/test_reliability_cli.py::test_output_folder_equal_to_the_input_folder_is_refused

# --- 10. small things ---------------------------------------------------------------------------------

def test_an_option_typo_is_one_line_with_the_closest_option():
    line = one_error_line(cli("colorize", "x.jpg", "--ovewrite"))
    assert "--ovewrite" in line and "did you mean --overwrite?" in line and "--no-overwrite" not in line
    assert "did you mean" in one_error_line(cli("colorise", "x.jpg")).lower()
    assert "INPUTS" in one_error_line(cli("colorize"))


@pytest.mark.parametrize("command", ["colorize", "sample-diverse"])
def test_help_names_the_inputs_plainly(command):
    result = cli(command, "--help")
    assert re.search(rf"Usage: .*{command} \[OPTIONS\] INPUTS\.\.\.", result.output), result.output
    assert "{" not in result.output.splitlines()[0] and "list[str]" not in result.output


@pytest.mark.parametrize("command", ["colorize", "sample-diverse", "train", "evaluate"])
def test_every_quiet_option_says_what_it_does(command):
    help_text = cli(command, "--help").output
    quiet = next(line for line in help_text.splitlines() if "--quiet" in line)
    assert quiet.split("--quiet", 1)[1].strip(), quiet


def test_loading_shows_on_a_terminal(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, monkeypatch):
    from recolor.commands import _shared

    terminal = _shared._console_class()(file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(_shared, "err", lambda: terminal)  # what loaded() prints through
    seen = []
    real_status = terminal.status
    monkeypatch.setattr(terminal, "status", lambda text, **kw: seen.append(text) or real_status(text, **kw))
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 0 and seen == []  # -q: nothing
    result = cli("colorize", grey_photo_path, "-o", tmp_path / "out2", "--model", tiny_pix2pix_checkpoint)
    assert result.exit_code == 0 and seen == [f"loading {tiny_pix2pix_checkpoint}..."]
