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
