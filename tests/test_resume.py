"""Issue 29 item 6: a run killed at any checkpoint and resumed ends bit for bit where the uninterrupted run ends.

A tiny pix2pix run with dropout (the random stream every step draws from), 24 photos of 32 px in
batches of 8 (3 steps an epoch), 10 steps, a checkpoint every 2 steps and at every epoch's end:
nine checkpoints. The run is stopped right after each of them in turn (an exception raised from
the save, as a kill would leave things; one case is a real SIGKILL between the two files of a
checkpoint) and resumed in a fresh trainer whose random streams were scrambled, as a new process's
are. Weights, optimiser states, the weight average, the loss scale and every random stream must
come out equal to the uninterrupted run's.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from recolor.checkpoint import load_checkpoint
from recolor.data import ColorPhotoDataset
from recolor.registry import get_model_spec
from recolor.training.loop import TrainSettings, Trainer, build_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "ndf": 8, "num_downs": 5, "image_size": 32, "batch_size": 8}  # pix2pix keeps its dropout 0.5
SAVES = 9  # steps 2, 3 (epoch end), 4, 6, 6 (epoch end), 8, 9 (epoch end), 10, 10 (the last, partial epoch's end)


class Killed(Exception):
    """Stands for a kill right after a checkpoint was written."""


def trainer(out: Path, photos: Path, average: str, seed: int) -> Trainer:
    torch.manual_seed(seed)  # a resumed run starts from other random streams than the first did
    random.seed(seed)
    np.random.seed(seed)
    recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))
    settings = TrainSettings(out_dir=out, epochs=5, max_steps=10, save_every=2, batch_size=8, workers=0, progress=False,
                             precision="fp32", samples=0, ema_decay=0.9 if average == "ema" else 0.0,
                             swa_from_epoch=2 if average == "swa" else None)
    run = Trainer(recipe, ColorPhotoDataset(photos, size=32, train=True), None, settings)
    # a CPU loss scaler standing in for CUDA's fp16 one: its scale and growth count are run state too
    recipe.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4, growth_interval=3)
    return run


def stop_after_save(run: Trainer, count: int) -> None:
    saves = []
    save = run.checkpoints.save

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        saves.append(1)
        if len(saves) == count:
            raise Killed

    run.checkpoints.save = save_then_stop


def outcome(run: Trainer) -> dict[str, torch.Tensor]:
    """Everything that must match: the last checkpoint's tensors (networks and average), the export,
    the optimiser states, the loss scale and the next draws of every random stream."""
    result = {f"last/{key}": value for key, value in load_checkpoint(run.out_dir / "last.safetensors").tensors.items()}
    result |= {f"export/{key}": value for key, value in load_checkpoint(run.out_dir / "model.safetensors").tensors.items()}
    for name, optimizer in run.recipe.optimizers.items():
        for index, state in optimizer.state_dict()["state"].items():
            result |= {f"optim/{name}/{index}/{key}": torch.as_tensor(value) for key, value in state.items()}
    result["scale"] = torch.tensor([run.recipe.scaler.get_scale(), run.recipe.scaler._get_growth_tracker()])
    result["random"] = torch.cat([torch.rand(4, dtype=torch.float64), torch.tensor(np.random.random(4)), torch.tensor([random.random()])])
    return result


def assert_same(resumed: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    assert resumed.keys() == expected.keys(), what
    differ = [key for key in expected if not torch.equal(resumed[key], expected[key])]
    assert not differ, f"{what}: {len(differ)} differ, first {differ[0]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_photo_folder):
    results = {}
    for average in ("ema", "swa"):
        run = trainer(tmp_path_factory.mktemp(f"whole-{average}"), tiny_photo_folder, average, seed=0)
        saves = []
        save = run.checkpoints.save
        run.checkpoints.save = lambda *args, **kwargs: (save(*args, **kwargs), saves.append(1))
        run.fit()
        assert run.step == 10 and len(saves) == SAVES
        results[average] = outcome(run)
    return results


@pytest.mark.parametrize("average", ["ema", "swa"])
def test_a_run_stopped_after_any_checkpoint_resumes_bit_for_bit(tmp_path, tiny_photo_folder, uninterrupted, average):
    for count in range(1, SAVES + 1):
        out = tmp_path / f"stopped-after-{count}"
        first = trainer(out, tiny_photo_folder, average, seed=0)
        stop_after_save(first, count)
        with pytest.raises(Killed):
            first.fit()
        resumed = trainer(out, tiny_photo_folder, average, seed=1234 + count)
        resumed.fit(resume=True)
        assert resumed.step == 10
        assert_same(outcome(resumed), uninterrupted[average], f"{average}, stopped after checkpoint {count}")


def test_a_sigkill_between_the_two_files_of_a_checkpoint_loses_nothing(tmp_path, tiny_photo_folder, uninterrupted):
    """A real SIGKILL, sent by the process to itself once the first file of the checkpoint of step 8
    (the sixth) is in place and before ``last.safetensors``, which commits it: the resume goes on from
    step 6, and ends where the whole run does."""
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # as this process: sums split over threads round otherwise
        from test_resume import trainer

        replace, commits = os.replace, []

        def replace_then_die(source, target, *args, **kwargs):
            replace(source, target, *args, **kwargs)
            if Path(target).name == "last.safetensors":
                commits.append(target)
            elif Path(target).suffix == ".safetensors" and len(commits) == 5:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace_then_die  # every atomic write ends with its rename
        trainer(Path({str(out)!r}), Path({str(tiny_photo_folder)!r}), "ema", seed=0).fit()
    """)
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(out / "last.safetensors").extra["trainer"]["step"] == 6  # the set of step 8 was never committed
    resumed = trainer(out, tiny_photo_folder, "ema", seed=99)
    resumed.fit(resume=True)
    assert_same(outcome(resumed), uninterrupted["ema"], "killed between the two files of step 8")
    assert len(list(out.glob("last.state-*.safetensors"))) == 1  # the uncommitted run state of the kill was cleared away
