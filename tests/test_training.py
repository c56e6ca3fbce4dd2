import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from recolor.checkpoint import load_checkpoint, save_checkpoint
from recolor.data import ColorPhotoDataset
from recolor.registry import get_model_spec
from recolor.training.averaging import EpochAverage
from recolor.training.loop import EpochSampler, TrainingDiverged, TrainSettings, Trainer, build_recipe, lab_batch

TINY = {"ngf": 8, "num_downs": 5, "image_size": 32, "batch_size": 8}


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def constant_step_recipe(values: list[float]):
    """A tiny pix2pix recipe whose step sets every generator weight to the next count (1, 2, 3...,
    appended to ``values``, which runs share): what an average of the weights must equal is known."""
    recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))

    def constant_step(batch):
        values.append(float(len(values) + 1))
        with torch.no_grad():
            for parameter in recipe.generator.parameters():
                parameter.fill_(values[-1])
        return {"recon": 0.5}

    recipe.train_step = constant_step
    return recipe


def test_dataset_crops_flips_and_skips_greyscale(tmp_path, tiny_photo_folder):
    from PIL import Image

    data = ColorPhotoDataset(tiny_photo_folder, size=48, train=True)
    item = data[0]
    assert item["rgb"].shape == (3, 48, 48) and item["rgb"].dtype == torch.uint8
    assert data.classes == ["class_a", "class_b"] and {data[0]["label"], data[len(data) - 1]["label"]} == {0, 1}
    # a folder with one grey photo and one colour photo only ever yields the colour one
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.open(tiny_photo_folder / "class_a" / "img_01.png").convert("L").convert("RGB").save(mixed / "a_grey.png")
    Image.open(tiny_photo_folder / "class_a" / "img_01.png").save(mixed / "b_colour.png")
    both = ColorPhotoDataset(mixed, size=32, train=False)
    first, second = both[0]["rgb"], both[1]["rgb"]
    assert torch.equal(first, second)  # index 0 (grey) was skipped in favour of the colour photo
    assert (first[0].float() - first[1].float()).abs().mean() > 1


def test_min_chroma_leaves_faded_photos_out_of_training_but_not_of_validation(tmp_path, tiny_photo_folder):
    from PIL import Image

    from recolor.imageio import mean_chroma
    from recolor.planning import training_datasets

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    colour = Image.open(tiny_photo_folder / "class_a" / "img_01.png").convert("RGB")
    grey = colour.convert("L").convert("RGB")
    Image.blend(grey, colour, 0.5).save(mixed / "a_faded.png")  # half the chroma: a faded print
    colour.save(mixed / "b_colour.png")
    faded_chroma = mean_chroma(Image.open(mixed / "a_faded.png"), thumbnail=64)
    assert 4 < faded_chroma < mean_chroma(colour, thumbnail=64) - 2
    spec = get_model_spec("pix2pix")
    config = spec.config({"image_size": 32})
    train_data, val_data = training_datasets(spec, config, mixed, mixed, min_chroma=faded_chroma + 1)
    train_data.train = False  # centre crops, to compare the photos returned
    assert torch.equal(train_data[0]["rgb"], train_data[1]["rgb"])  # the faded photo gave way to the colour one
    assert not torch.equal(val_data[0]["rgb"], val_data[1]["rgb"])  # validation measures every photo
    default, _ = training_datasets(spec, config, mixed)
    default.train = False
    assert not torch.equal(default[0]["rgb"], default[1]["rgb"])  # the default only skips near-greyscale


def test_epoch_sampler_is_deterministic_resumable_and_split_by_rank():
    sampler = EpochSampler(10, seed=3)
    sampler.epoch = 2
    full = list(sampler)
    assert sorted(full) == list(range(10))
    again = EpochSampler(10, seed=3)
    again.epoch = 2
    assert list(again) == full
    again.epoch = 3
    assert list(again) != full
    sampler.skip = 4
    assert list(sampler) == full[4:]
    ranks = [EpochSampler(10, seed=3, num_replicas=3, rank=r) for r in range(3)]
    parts = [r.indices() for r in ranks]
    assert all(len(p) == 4 for p in parts) and set().union(*parts) == set(range(10))


def test_short_training_run_lowers_the_l1_loss(tmp_path, tiny_photo_folder):
    torch.manual_seed(0)
    spec = get_model_spec("pix2pix")
    config = spec.config(TINY)
    recipe = build_recipe("pix2pix", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    settings = TrainSettings(out_dir=tmp_path / "run", epochs=20, batch_size=8, workers=0, progress=False, log_every=1, samples=4, save_every=1000)
    result = Trainer(recipe, data, ColorPhotoDataset(tiny_photo_folder, size=32, train=False), settings).fit()
    log = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "recon" in r]
    first = sum(r["recon"] for r in log[:5]) / 5
    last = sum(r["recon"] for r in log[-5:]) / 5
    assert result["steps"] == 60 and last < 0.8 * first
    seconds = [r["seconds"] for r in log]  # wall time since the fit began, for throughput from the log
    assert seconds[0] > 0 and all(b >= a for a, b in zip(seconds, seconds[1:])) and seconds[-1] <= result["seconds"]
    assert (tmp_path / "run" / "samples" / "epoch_020.png").is_file()
    exported = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert exported.kind == "weights" and exported.config["ngf"] == 8
    assert "val_ab_l1" in result
    validations = [r["val_ab_l1"] for r in read_log(tmp_path / "run" / "log.jsonl") if "val_ab_l1" in r]
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert best.kind == "weights" and best.extra["val_ab_l1"] == min(validations)


def test_sigkilled_run_resumes_from_its_last_checkpoint(tmp_path, tiny_photo_folder):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "recolor.cli", "train", "--model", "pix2pix", "--data", str(tiny_photo_folder),
               "--out", str(out), "--epochs", "100", "--max-steps", "60", "--save-every", "5", "--workers", "0",
               "--quiet", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "--batch-size", "8"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    state_file = out / "trainer_state.json"
    while time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["step"] >= 10:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(out / "last.safetensors")
    saved_step = saved.extra["trainer"]["step"]
    assert 10 <= saved_step < 60
    log_before = read_log(out / "log.jsonl")

    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed pix2pix at step {saved_step}" in resumed.stderr
    log_after = read_log(out / "log.jsonl")[len(log_before):]
    steps_after = [r["step"] for r in log_after if "recon" in r]
    # logging happens every 10 steps: the first line after the resume is the next multiple of 10
    assert steps_after[0] == (saved_step // 10 + 1) * 10 and steps_after[-1] == 60
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["steps"] == 60


def test_init_from_loads_the_generator_of_an_exported_checkpoint(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint):
    config = get_model_spec("pix2pix").config(load_checkpoint(tiny_pix2pix_checkpoint).config)
    recipe = build_recipe("pix2pix", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    trainer = Trainer(recipe, data, None, TrainSettings(out_dir=tmp_path / "ft", batch_size=8, workers=0, progress=False))
    trainer.initialize_from(tiny_pix2pix_checkpoint)
    expected = load_checkpoint(tiny_pix2pix_checkpoint).tensors
    for key, value in recipe.generator.state_dict().items():
        assert torch.equal(value.half(), expected[key].half()), key


def test_init_from_a_checkpoint_of_another_model_is_refused(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint):
    from typer.testing import CliRunner

    from recolor.cli import app

    result = CliRunner().invoke(app, ["train", "--model", "resnet18", "--data", str(tiny_photo_folder), "--out", str(tmp_path / "x"),
                                      "--init-from", str(tiny_pix2pix_checkpoint), "--max-steps", "1"])
    assert result.exit_code == 2 and "is for model 'pix2pix', not 'resnet18'" in result.output


def test_swa_exports_the_mean_of_the_epoch_weights_with_fresh_batchnorm_statistics(tmp_path, tiny_photo_folder):
    config = get_model_spec("pix2pix").config(TINY)
    recipe = build_recipe("pix2pix", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    trainer = Trainer(recipe, data, None, TrainSettings(out_dir=tmp_path / "swa", batch_size=8, workers=0, progress=False, precision="fp32"))
    average = EpochAverage(from_epoch=1)
    generator = recipe.generator
    snapshots = []
    for epoch, scale in ((1, 1.0), (2, 3.0)):
        with torch.no_grad():
            for parameter in generator.parameters():
                parameter.fill_(scale)
        snapshots.append({k: v.clone() for k, v in generator.state_dict().items()})
        average.after_epoch(recipe, epoch)
    assert average.finish(recipe, (lab_batch(batch["rgb"], recipe.device, True)["L"] for batch in trainer.loader)) == {"swa_epochs": 2}
    first_conv = generator.down[0][0].weight
    assert torch.allclose(first_conv, torch.full_like(first_conv, 2.0))
    norm = generator.down[1][2]
    assert isinstance(norm, torch.nn.BatchNorm2d) and norm.momentum == 0.1
    # the running statistics come from the data pass, not from the average of the snapshots
    assert not torch.allclose(norm.running_var, (snapshots[0]["down.1.2.running_var"] + snapshots[1]["down.1.2.running_var"]) / 2)
    assert norm.num_batches_tracked > 0


def test_swa_keeps_the_statistics_of_a_frozen_encoders_batchnorms(tiny_photo_folder):
    """effnet-unet's ImageNet encoder is frozen (encoder_lr 0) and runs in eval mode, its ImageNet
    statistics kept on purpose; SWA recomputes the statistics of the decoder's BatchNorms only."""
    config = get_model_spec("effnet-unet").config({"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "batch_size": 4})
    recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
    generator = recipe.generator
    encoder_norms = [m for m in generator.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    decoder_norms = [m for n, m in generator.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and not n.startswith("encoder.")]
    assert encoder_norms and decoder_norms
    for norm in encoder_norms + decoder_norms:  # as if ImageNet's, and as if training had tracked some
        norm.running_mean.fill_(0.25)
        norm.running_var.fill_(4.0)
        norm.num_batches_tracked.fill_(7)
    average = EpochAverage(from_epoch=1)
    average.after_epoch(recipe, 1)
    batches = torch.utils.data.DataLoader(ColorPhotoDataset(tiny_photo_folder, size=64), batch_size=4)
    assert average.finish(recipe, (lab_batch(batch["rgb"], recipe.device, False)["L"] for batch in batches)) == {"swa_epochs": 1}
    for norm in encoder_norms:
        assert torch.all(norm.running_mean == 0.25) and torch.all(norm.running_var == 4.0) and norm.num_batches_tracked == 7
    for norm in decoder_norms:
        assert not torch.all(norm.running_var == 4.0) and norm.num_batches_tracked == 6  # recomputed over the 6 batches


def test_a_diverging_run_stops_with_a_clear_error_before_saving_nan_weights(tmp_path, tiny_photo_folder):
    import pytest

    recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))
    calls = []

    def diverging_step(batch):
        calls.append(1)
        return {"recon": 0.5 if len(calls) < 3 else float("nan")}

    recipe.train_step = diverging_step
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    trainer = Trainer(recipe, data, None, TrainSettings(out_dir=tmp_path / "nan", epochs=5, batch_size=8, workers=0, progress=False, save_every=1))
    with pytest.raises(TrainingDiverged, match="training diverged at step 3"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "nan" / "last.safetensors").extra["trainer"]["step"] == 2


def test_decay_epochs_lowers_learning_rates_linearly_to_zero_and_resume_continues_the_schedule(tmp_path, tiny_photo_folder):
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    used: list[list[float]] = []

    def run(epochs, resume):
        recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))

        def recording_step(batch):
            used.append([group["lr"] for optimizer in recipe.optimizers.values() for group in optimizer.param_groups])
            return {"recon": 0.5}

        recipe.train_step = recording_step
        settings = TrainSettings(out_dir=tmp_path / "decay", epochs=epochs, decay_epochs=2, batch_size=8, workers=0, progress=False, save_every=1)
        trainer = Trainer(recipe, data, None, settings)
        trainer.fit(resume=resume)
        return trainer.steps_per_epoch

    # stop after 3 of 4 epochs (max_steps is not part of the schedule's total: use a second run of --epochs 4)
    steps_per_epoch = run(epochs=3, resume=False)
    assert steps_per_epoch >= 1
    run(epochs=4, resume=True)  # same schedule as one 4-epoch run: the factor is a function of the step
    total, decay = 4 * steps_per_epoch, 2 * steps_per_epoch
    first_run = used[: 3 * steps_per_epoch]
    # the first run had 3 epochs in all: constant for 1, then decaying over its last 2
    expected_first = [2e-4 * min(1.0, (3 * steps_per_epoch - step) / decay) for step in range(3 * steps_per_epoch)]
    assert [lrs[0] for lrs in first_run] == pytest.approx(expected_first)
    resumed = used[3 * steps_per_epoch:]
    assert len(resumed) == steps_per_epoch
    expected_resumed = [2e-4 * (total - step) / decay for step in range(3 * steps_per_epoch, total)]
    assert [lrs[0] for lrs in resumed] == pytest.approx(expected_resumed)
    assert all(len(set(lrs)) == 1 for lrs in used)  # generator and critic decay together
    assert resumed[-1][0] > 0 and resumed[-1][0] < 2e-4 / decay * 1.01


def test_ema_validates_exports_and_resumes_the_moving_average_of_the_generator(tmp_path, tiny_photo_folder):
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    values: list[float] = []  # the value every generator weight is set to at each step, over both runs
    initial = {}

    def run(epochs, resume):
        recipe = constant_step_recipe(values)
        if not initial:
            initial["conv"] = recipe.generator.down[0][0].weight.detach().clone()
        settings = TrainSettings(out_dir=tmp_path / "ema", epochs=epochs, batch_size=8, workers=0, progress=False, save_every=1,
                                 precision="fp32", ema_decay=0.5)
        Trainer(recipe, data, ColorPhotoDataset(tiny_photo_folder, size=32, train=False), settings).fit(resume=resume)

    run(epochs=1, resume=False)
    run(epochs=2, resume=True)  # the average goes on from the checkpoint, not from the resumed weights
    assert len(values) >= 2
    expected = initial["conv"]
    for value in values:
        expected = 0.5 * expected + 0.5 * value
    assert not torch.allclose(expected, torch.full_like(expected, values[-1]))
    exported = load_checkpoint(tmp_path / "ema" / "model.safetensors")
    assert exported.extra["ema_decay"] == 0.5
    assert torch.allclose(exported.tensors["down.0.0.weight"].float(), expected, rtol=1e-3, atol=1e-3)
    last = load_checkpoint(tmp_path / "ema" / "last.safetensors")
    assert torch.allclose(last.sub_state("generator")["down.0.0.weight"], torch.full_like(expected, values[-1]))
    assert torch.allclose(last.generator_state()["down.0.0.weight"], expected)  # colorizing with a run's checkpoint uses the average
    # best.safetensors (kept on validation) holds an average too, never the raw weights
    best = load_checkpoint(tmp_path / "ema" / "best.safetensors").tensors["down.0.0.weight"].float()
    assert not torch.allclose(best, best.flatten()[0].expand_as(best))


def test_ema_and_swa_together_are_refused(tmp_path, tiny_photo_folder):
    recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    with pytest.raises(ValueError, match="not both"):
        Trainer(recipe, data, None, TrainSettings(out_dir=tmp_path / "x", batch_size=8, workers=0, ema_decay=0.9, swa_from_epoch=1))


# --- issue 14: what a resume may change, the fp16 loss scale, SWA across a resume --------------------------

SMALL_RUN = ["--model", "pix2pix", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu", "-q"]


def train_cli(*args):
    from typer.testing import CliRunner

    from recolor.cli import app

    return CliRunner().invoke(app, ["train", *map(str, args)])


def test_resume_with_a_new_lr_trains_at_the_new_rate(tmp_path, tiny_photo_folder):
    from recolor.checkpoint import load_optimizer_states

    out = tmp_path / "run"
    first = train_cli("--data", tiny_photo_folder, "--out", out, "--max-steps", "1", *SMALL_RUN)
    assert first.exit_code == 0, first.output
    resumed = train_cli("--data", tiny_photo_folder, "--out", out, "--max-steps", "2", "--resume", "--lr", "5e-4", *SMALL_RUN)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "last.safetensors").config["lr"] == 5e-4  # recorded ...
    states = load_optimizer_states(out / load_checkpoint(out / "last.safetensors").extra["run_state"], step=2)
    # ... and used: both optimisers stepped at the new rate (they had restored 2e-4 with their state)
    assert [group["lr"] for state in states.values() for group in state["param_groups"]] == pytest.approx([5e-4, 5e-4])


def test_resume_refuses_another_seed_and_init_from_starts_a_fresh_run_folder(tmp_path, tiny_photo_folder, tiny_pix2pix_checkpoint):
    out = tmp_path / "run"
    # the restartable command: --init-from with --resume on a folder without a checkpoint fine-tunes (it was dropped)
    first = train_cli("--data", tiny_photo_folder, "--out", out, "--max-steps", "1", "--resume", "--init-from", tiny_pix2pix_checkpoint, *SMALL_RUN)
    assert first.exit_code == 0 and "initialised pix2pix from" in first.output, first.output
    refused = train_cli("--data", tiny_photo_folder, "--out", out, "--max-steps", "2", "--resume", "--seed", "3", *SMALL_RUN)
    assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "--seed 0" in refused.output
    assert load_checkpoint(out / "last.safetensors").extra["trainer"]["step"] == 1  # nothing trained with the other order


def test_the_fp16_loss_scale_is_updated_once_per_training_step(tmp_path, tiny_photo_folder):
    recipe = build_recipe("pix2pix", get_model_spec("pix2pix").config(TINY), torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)
    trainer = Trainer(recipe, data, None, TrainSettings(out_dir=tmp_path / "amp", batch_size=8, workers=0, progress=False, precision="fp32",
                                                        max_steps=3, samples=0))
    # a CPU scaler stands in for the CUDA fp16 one: finding no inf, it doubles the scale at every update.
    # pix2pix steps two optimisers a step (critic, generator): the scale must move once, after both
    recipe.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=1)
    trainer.fit()
    assert recipe.scaler.get_scale() == 2.0 ** (8 + 3)


def test_swa_goes_on_across_a_resume(tmp_path, tiny_photo_folder):
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=True)  # 24 photos, batch 8: 3 steps an epoch
    values: list[float] = []

    def run(epochs, resume):
        recipe = constant_step_recipe(values)
        settings = TrainSettings(out_dir=tmp_path / "swa", epochs=epochs, batch_size=8, workers=0, progress=False, precision="fp32",
                                 swa_from_epoch=1, samples=0)
        Trainer(recipe, data, None, settings).fit(resume=resume)

    run(epochs=2, resume=False)
    run(epochs=3, resume=True)
    exported = load_checkpoint(tmp_path / "swa" / "model.safetensors")
    assert exported.extra["swa_epochs"] == 3
    # the generator's weights at the ends of epochs 1, 2 and 3 were 3, 6 and 9: their mean is 6
    weight = exported.tensors["down.0.0.weight"].float()
    assert torch.equal(weight, torch.full_like(weight, 6.0))


def test_reading_a_checkpoints_model_config_or_figures_reads_no_tensor(tmp_path, tiny_pix2pix_checkpoint, monkeypatch):
    """Issue 29 item 16: the resume's config, the best-so-far figure and divcolor's feature settings
    come from the file's header; reading every tensor (and checksumming them) is for loading weights."""
    import recolor.checkpoint
    from recolor.planning import training_config
    from recolor.training.checkpointing import RunCheckpoints
    from recolor.training.divcolor import resolved_feature_config

    spec = get_model_spec("pix2pix")
    config = spec.config(TINY)
    recipe = build_recipe("pix2pix", config, torch.device("cpu"))
    out = tmp_path / "run"
    out.mkdir()
    networks = {f"{name}.{key}": value for name, network in recipe.networks.items() for key, value in network.state_dict().items()}
    save_checkpoint(out / "last.safetensors", networks, "pix2pix", config, kind="training", extra={"trainer": {"step": 3}})
    RunCheckpoints(recipe, out).keep_if_best(0.2, 3)
    checksums = []
    checksum = recolor.checkpoint.tensors_checksum
    monkeypatch.setattr(recolor.checkpoint, "tensors_checksum", lambda tensors: checksums.append(len(tensors)) or checksum(tensors))
    assert training_config(spec, {}, out, resume=True, init_from=None) == config
    RunCheckpoints(recipe, out).keep_if_best(0.3, 4)  # not better: best.safetensors stays
    divcolor = get_model_spec("divcolor").config({"feature_checkpoint": str(tiny_pix2pix_checkpoint)})
    assert resolved_feature_config(divcolor)["feature_ngf"] == 8
    assert checksums == []
    assert load_checkpoint(out / "best.safetensors").extra["val_ab_l1"] == 0.2
