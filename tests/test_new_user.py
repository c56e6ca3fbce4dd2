"""What a new user tripped over (issue 28): fine-tuning from a model name, runs that say which
weights made their outputs, the README's Python snippets, Python errors in Python's words, the
evaluate example's JSON, and thread counts that fit the CPUs the process may use."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from recolor.cli import app

runner = CliRunner()
TINY_RUN = ["--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu", "-q"]


def cli(*args):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture
def tiny_shipped_pix2pix(tmp_path, monkeypatch, tiny_pix2pix_checkpoint):
    """The tiny pix2pix file installed as the shipped pix2pix weights (RECOLOR_WEIGHTS_DIR wins over the package's)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_pix2pix_checkpoint, folder / "pix2pix.safetensors")
    monkeypatch.setenv("RECOLOR_WEIGHTS_DIR", str(folder))
    return folder / "pix2pix.safetensors"


def stored_sha256(path) -> str:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()["recolor.sha256"]


# --- item 8: fine-tuning and which weights made an output -----------------------------------------

def test_init_from_takes_a_model_name_as_model_does(tmp_path, tiny_photo_folder, tiny_shipped_pix2pix, one_thread):
    result = cli("train", "--model", "pix2pix", "--init-from", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "ft",
                 "--max-steps", "1", *TINY_RUN)
    assert result.exit_code == 0, result.output
    assert f"initialised pix2pix from {tiny_shipped_pix2pix}" in result.output.replace("\n", "")


def test_an_unknown_init_from_is_one_usage_line(tmp_path, tiny_photo_folder):
    result = cli("train", "--model", "pix2pix", "--init-from", "no-such-model", "--data", tiny_photo_folder, "--out", tmp_path / "ft", *TINY_RUN)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "no-such-model" in result.output


def test_a_users_own_weights_are_reported_by_path_and_records_carry_the_weights_hash(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint,
                                                                                   tiny_shipped_pix2pix, one_thread):
    own = cli("colorize", grey_photo_path, "-o", tmp_path / "own", "--model", tiny_pix2pix_checkpoint, "--json", "-q")
    assert own.exit_code == 0, own.output
    record = json.loads(own.stdout.splitlines()[0])
    assert record["model"] == str(tiny_pix2pix_checkpoint)
    assert record["weights_sha256"] == stored_sha256(tiny_pix2pix_checkpoint)
    assert f"with {tiny_pix2pix_checkpoint}" in own.stderr.replace("\n", "") and "with pix2pix" not in own.stderr

    shipped = cli("colorize", grey_photo_path, "-o", tmp_path / "shipped", "--model", "pix2pix", "--json", "-q")
    assert shipped.exit_code == 0, shipped.output
    assert json.loads(shipped.stdout.splitlines()[0])["model"] == "pix2pix"
    assert "with pix2pix" in shipped.stderr


def test_the_weights_hash_of_a_file_without_a_stored_one_is_computed_from_its_tensors(tmp_path, tiny_pix2pix_checkpoint):
    from safetensors.torch import load_file, save_file

    from recolor.checkpoint import load_checkpoint

    with safe_open(str(tiny_pix2pix_checkpoint), framework="pt") as handle:
        metadata = {key: value for key, value in handle.metadata().items() if key != "recolor.sha256"}
    older = tmp_path / "older.safetensors"
    save_file(load_file(str(tiny_pix2pix_checkpoint)), str(older), metadata=metadata)
    assert load_checkpoint(older).sha256 == stored_sha256(tiny_pix2pix_checkpoint)


# --- item 5: the README's Python runs as pasted, and Python errors speak Python ---------------------

REPO = Path(__file__).resolve().parents[1]
NEEDS_CUDA = ("needs CUDA", "needs a GPU")  # a snippet line (or a snippet's first line) marked so runs only where CUDA is


README_LINES: dict[str, int] = {}  # each snippet's line in README.md (the test ids)


def readme_snippets() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    snippets = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        README_LINES[match.group(1)] = text.count("\n", 0, match.start()) + 1
        snippets.append(match.group(1))
    assert snippets, "the README has Python snippets"
    return snippets


def runnable(snippet: str, cuda: bool) -> str | None:
    """The snippet as it runs here: None when it is marked as a whole as needing CUDA and there is none,
    else without the lines so marked."""
    lines = snippet.splitlines()
    if cuda:
        return snippet
    if lines and any(mark in lines[0] for mark in NEEDS_CUDA):
        return None
    return "\n".join(line for line in lines if not any(mark in line for mark in NEEDS_CUDA))


@pytest.fixture
def snippet_folder(tmp_path, photos):
    """A folder holding every photo the README's snippets name."""
    small = {name: Image.fromarray(image).resize((96, 64)) for name, image in photos.items()}
    small["astronaut"].convert("L").save(tmp_path / "old_photo.jpg")
    small["chelsea"].convert("L").save(tmp_path / "scan.jpg")
    small["coffee"].convert("L").save(tmp_path / "a.jpg")
    small["astronaut"].save(tmp_path / "b.png")
    small["coffee"].convert("L").save(tmp_path / "photo.jpg")
    (tmp_path / "effnet-unet.onnx").symlink_to(REPO / "weights" / "effnet-unet.onnx")  # what `recolor export` writes
    return tmp_path


@pytest.mark.parametrize("snippet", readme_snippets(), ids=lambda snippet: f"line {README_LINES[snippet]}")
def test_every_readme_python_snippet_runs_as_pasted(snippet, snippet_folder):
    import torch

    code = runnable(snippet, torch.cuda.is_available())
    if code is None:
        pytest.skip("a snippet marked as needing CUDA, on a machine without it")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=snippet_folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README snippet failed:\n{code}\n{done.stderr[-3000:]}"
    for saved in re.findall(r"\.save\(\"([^\"]+)\"\)", code):  # and wrote what it says it saves
        assert (snippet_folder / saved).is_file(), saved


def test_the_cuda_marker_drops_only_the_marked_lines():
    snippet = 'a = 1\nb = load(device="cuda")  # needs CUDA\nc = 3'
    assert runnable(snippet, cuda=False) == "a = 1\nc = 3" and runnable(snippet, cuda=True) == snippet
    assert runnable("# needs a GPU\nx = 1", cuda=False) is None


def test_python_errors_name_parameters_and_the_command_line_names_flags(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    from recolor import Colorizer, load_sampler

    with pytest.raises(ValueError) as raised:
        Colorizer.load(tiny_pix2pix_checkpoint, device="cuda:99")  # no machine has 100 GPUs
    assert str(raised.value).startswith("device='cuda:99': ") and "--" not in str(raised.value)
    with pytest.raises(ValueError, match=r"^draws=0: must be at least 1$"):
        load_sampler(tiny_pix2pix_checkpoint, draws=0)
    with pytest.raises(ValueError) as raised:
        load_sampler(tiny_pix2pix_checkpoint, draws=4).check(9, "topk")
    assert str(raised.value) == "k=9: cannot cluster 4 draws into 9 colorizations: raise draws=9 or more"

    result = cli("sample-diverse", grey_photo_path, "-o", tmp_path, "-k", "9", "--draws", "4", "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 2 and "-k 9: cannot cluster 4 draws into 9 colorizations: raise --draws 9 or more" in result.output


# --- item 1: the README's evaluate example, offline, writes JSON that parses ---------------------

@pytest.fixture
def offline(monkeypatch):
    """No network: torchvision's weight downloads fail as they do offline (and no test downloads anything)."""
    import urllib.error

    import torchvision

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)


def readme_evaluate_example() -> list[str]:
    """The README's first `recolor evaluate ... --json > scores.json` command, as arguments."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("recolor evaluate ") and "--json > scores.json" in line)
    return shlex.split(line.split(">")[0])[1:]


def test_the_readme_evaluate_example_runs_offline_and_its_stdout_is_json(tmp_path, photos, offline, one_thread):
    from recolor.checkpoint import ships_weights

    arguments = readme_evaluate_example()
    models = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "--model"]
    if not all(ships_weights(model) for model in models):
        pytest.skip("a checkout without the shipped weights")
    data = tmp_path / "val"  # tiny data: three small photos
    data.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photos[name]).resize((64, 48)).save(data / f"{name}.jpg")
    swapped = {arguments[arguments.index("--data") + 1]: str(data), arguments[arguments.index("--report") + 1]: str(tmp_path / "report")}
    result = runner.invoke(app, [swapped.get(argument, argument) for argument in arguments] + ["--omega-steps", "1"])  # Omega kept short
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert {"accuracy", "cim", "omega", "is", "fid"} <= set(scores["metrics"]), scores["notes"]  # none skipped offline
    assert set(models) <= {row["name"] for row in scores["rows"]}
    assert (tmp_path / "report" / "index.html").is_file()


def test_download_chatter_goes_to_stderr_not_into_the_json(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint, monkeypatch, one_thread):
    import torchvision

    def download(*args, **kwargs):  # what torch.hub does on a machine online
        print('Downloading: "https://download.pytorch.org/models/resnet18-f37072fd.pth" to /root/.cache/torch/hub/checkpoints/')
        return torchvision.models.resnet18().state_dict()

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", download)
    result = cli("evaluate", "--model", tiny_pix2pix_checkpoint, "--data", tiny_photo_folder, "--metric", "accuracy", "--classifier", "resnet18",
                 "--size", "32", "--limit", "2", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["metrics"]) == ["accuracy"]
    assert "Downloading:" in result.stderr


def test_an_offline_download_backed_judge_is_one_line_pointing_at_the_installed_one(tiny_photo_folder, tiny_pix2pix_checkpoint, offline):
    base = ["evaluate", "--model", tiny_pix2pix_checkpoint, "--data", tiny_photo_folder, "--size", "32", "--limit", "2", "-q"]
    for extra, pointer in ((["--metric", "accuracy", "--classifier", "resnet18"], "--classifier efficientnet-lite2"),
                           (["--metric", "fid", "--backbone", "inception_v3"], "--backbone efficientnet-lite2")):
        result = cli(*base, *extra)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and pointer in result.output, result.output


def test_classifier_metrics_default_to_the_installed_judge(tiny_photo_folder, tiny_pix2pix_checkpoint, offline, one_thread):
    result = cli("evaluate", "--model", tiny_pix2pix_checkpoint, "--data", tiny_photo_folder, "--metric", "accuracy", "--metric", "fid",
                 "--size", "32", "--limit", "2", "--json", "-q")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["info"]
    assert "efficientnet-lite2" in json.dumps(info)


# --- item 4: threads that fit the CPUs the tool may use -------------------------------------------

PINNED_TO_ONE_CPU = """
import os, sys, torch
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.cpu_count = lambda: 16  # the machine's count, which the affinity mask overrides
from recolor.pipeline import default_workers
from recolor.threads import default_threads, usable_cpus
torch.set_num_threads(default_threads())
print(usable_cpus(), default_threads(), torch.get_num_threads(), default_workers(torch.device("cpu")))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_a_process_pinned_to_one_cpu_computes_decodes_and_saves_on_one_thread_each():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", PINNED_TO_ONE_CPU], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1", "1"]  # usable CPUs, threads, torch's threads, decode (and save) threads


def test_cpus_that_other_processes_keep_busy_are_left_to_them(monkeypatch):
    from recolor import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    # four CPUs, 100 jiffies each over the sample: 200 of the 400 busy, two CPUs' worth
    samples = iter([(0.0, 0.0), (2 * 100.0, 4 * 100.0)])
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: next(samples))
    assert threads.busy_cpus() == pytest.approx(2.0)
    samples = iter([(0.0, 0.0), (2 * 100.0, 4 * 100.0)])
    assert threads.default_threads() == 2
    samples = iter([(0.0, 0.0), (4 * 100.0, 4 * 100.0)])
    assert threads.default_threads() == 1  # every CPU busy: one thread, which loses only its share


def test_proc_stat_is_read_for_the_cpus_of_the_affinity_mask(monkeypatch, tmp_path):
    from recolor import threads

    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\ncpu1 50 0 0 50 0 0 0 0 0 0\nintr 1 2\n")
    monkeypatch.setattr(threads, "Path", lambda name: stat)
    assert threads._cpu_times({1}) == (50.0, 100.0)
    assert threads._cpu_times({0, 1}) == (65.0, 200.0)


def test_threads_option_sets_the_compute_threads(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    import torch

    previous = torch.get_num_threads()
    try:
        for command in (["colorize", grey_photo_path, "-o", tmp_path / "c"], ["sample-diverse", grey_photo_path, "-o", tmp_path / "d", "-k", "2", "--draws", "4"]):
            result = cli(*command, "--model", tiny_pix2pix_checkpoint, "--threads", "3", "-q")
            assert result.exit_code == 0, result.output
            assert torch.get_num_threads() == 3
            torch.set_num_threads(previous)
        assert cli("evaluate", "--data", tmp_path, "--threads", "0").exit_code == 2  # below 1: usage
    finally:
        torch.set_num_threads(previous)


# --- item 9: the install section ----------------------------------------------------------------

def test_the_readme_install_makes_a_venv_and_pins_the_cpu_torch_that_ci_pins():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert "python3 -m venv .venv" in setup
    ci_pins = re.search(r"pip install .*?(torch==\S+ torchvision==\S+)", (REPO / ".ci" / "run").read_text()).group(1)
    assert f"pip install {ci_pins} --index-url https://download.pytorch.org/whl/cpu" in setup  # the same torch as CI's
    assert re.search(r"\d+(\.\d+)? GB with the CPU-only torch", setup) and re.search(r"about \d+ minutes", setup)
