"""Distributed training on two CPU processes (gloo), through the CLI's own code paths.

The spawned ranks call ``recolor.planning.distributed_context`` (as ``recolor train`` does) with
torchrun's environment and run the ordinary ``Trainer``; each rank then dumps its parameters (a test-only file) so that the
test can check that the ranks, which saw different images, hold identical weights.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import recolor.training  # noqa: F401 - registers the models
from recolor.checkpoint import load_checkpoint
from recolor.registry import get_model_spec

TINY_PIX2PIX = {"image_size": 32, "ngf": 8, "ndf": 8, "num_downs": 5, "batch_size": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_rank(rank: int, world_size: int, port: int, data: str, out: str, dumps: str, model: str, overrides: dict, phases: list[int]) -> None:
    """One rank: as torchrun would start it; trains to each step count of ``phases`` in turn
    (every phase after the first resumes from the run folder) and dumps its parameters."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from recolor.planning import distributed_context, end_distributed, training_dataset
    from recolor.training.loop import TrainSettings, Trainer, build_recipe

    context = distributed_context("cpu")
    try:
        spec = get_model_spec(model)
        config = spec.config(overrides)
        for phase, steps in enumerate(phases):
            torch.manual_seed(0)
            dataset = training_dataset(spec, config, data, train=True)
            settings = TrainSettings(out_dir=Path(out), epochs=100, batch_size=config["batch_size"], workers=0,
                                     max_steps=steps, progress=False, samples=0, rank=context["rank"], world_size=context["world_size"])
            recipe = build_recipe(spec.name, config, torch.device(context["device"]))
            Trainer(recipe, dataset, None, settings).fit(resume=phase > 0)
            parameters = {f"{name}.{key}": value.detach().contiguous() for name, network in recipe.networks.items()
                          for key, value in network.named_parameters()}
            save_file(parameters, str(Path(dumps) / f"phase{phase}_rank{rank}.safetensors"))
    finally:
        end_distributed(context)


def run_two_ranks(tmp_path: Path, data: Path, model: str = "pix2pix", overrides: dict | None = None, phases: tuple[int, ...] = (2, 4)) -> tuple[Path, Path]:
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    mp.start_processes(train_rank, args=(2, free_port(), str(data), str(out), str(dumps), model, overrides or TINY_PIX2PIX, list(phases)),
                       nprocs=2, start_method="spawn", join=True)
    return out, dumps


def test_two_ranks_hold_the_same_weights_and_resume(tmp_path, tiny_photo_folder):
    out, dumps = run_two_ranks(tmp_path, tiny_photo_folder)
    spec = get_model_spec("pix2pix")
    torch.manual_seed(0)
    initial = spec.recipe(spec, spec.config(TINY_PIX2PIX), torch.device("cpu")).networks["generator"].state_dict()
    for phase in (0, 1):
        rank0, rank1 = (load_file(str(dumps / f"phase{phase}_rank{rank}.safetensors")) for rank in (0, 1))
        assert rank0.keys() == rank1.keys() and any(key.startswith("discriminator.") for key in rank0)
        differing = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
        assert not differing, f"ranks disagree after phase {phase} on {differing[:3]}"
    # training moved the weights, and the checkpoint rank 0 wrote is the weights both ranks hold
    assert any(not torch.equal(initial[key], rank0[f"generator.{key}"]) for key in initial if f"generator.{key}" in rank0)
    checkpoint = load_checkpoint(out / "last.safetensors")
    assert checkpoint.extra["trainer"]["step"] == 4  # the second phase resumed at step 2 on both ranks
    stored = checkpoint.sub_state("generator")
    assert all(torch.equal(stored[key[len("generator."):]], value) for key, value in rank1.items() if key.startswith("generator."))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log if "d" in record] == [1]  # rank 0 alone logs (each rank would log step 1)


def test_torchrun_runs_the_train_command(tmp_path, tiny_photo_folder):
    """The real launcher: ``torchrun --nproc_per_node 2 -m recolor.cli train`` on the CPU."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "recolor.cli", "train", "--model", "pix2pix",
               "--data", str(tiny_photo_folder), "--out", str(out), "--device", "cpu", "--workers", "0", "--max-steps", "3", "--quiet",
               *[arg for key, value in TINY_PIX2PIX.items() for arg in ("--set", f"{key}={value}")]]
    # a session of its own: if it hangs, the launcher and both workers are killed together
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("torchrun did not finish in 240 s")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 3  # rank 0 alone prints the result
    assert load_checkpoint(out / "last.safetensors").extra["trainer"]["step"] == 3
    assert (out / "model.safetensors").is_file()
    # 12 images per rank per epoch at batch size 2: each rank ran 3 batches of its own half
    assert "img/s" in result.stderr


def test_single_process_and_cpu_settings(tmp_path, tiny_photo_folder, monkeypatch):
    from recolor.planning import distributed_context
    from recolor.data import ColorPhotoDataset
    from recolor.training.loop import TrainSettings, Trainer, build_recipe

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_context("cpu") == {"rank": 0, "world_size": 1, "device": "cpu", "distributed": False}
    spec = get_model_spec("pix2pix")
    config = spec.config(TINY_PIX2PIX)
    recipe = build_recipe("pix2pix", config, torch.device("cpu"))
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        Trainer(recipe, ColorPhotoDataset(tiny_photo_folder, size=32), None, TrainSettings(out_dir=tmp_path, batch_size=2, sync_batchnorm=True))


def test_wgan_gp_pretraining_counts_the_epochs_of_each_rank(tmp_path, tiny_photo_folder):
    """Under torchrun an epoch is each rank's share of the data: 24 photos, 2 ranks, batch 2, so
    6 steps; one epoch of L1 pre-training is those 6 steps (it was 12: the whole dataset's count)."""
    out, _ = run_two_ranks(tmp_path, tiny_photo_folder, model="wgan-gp", overrides={**TINY_PIX2PIX, "l1_pretrain_epochs": 1}, phases=(1,))
    assert load_checkpoint(out / "last.safetensors").extra["gan_schedule"]["pretrain_steps"] == 6
