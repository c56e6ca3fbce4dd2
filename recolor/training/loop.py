"""The one training loop every recipe runs in.

Files in the run folder:

* ``last.safetensors``        every network's weights (kind "training"), config, trainer state
* ``last.optim.safetensors``  every optimiser's state (written just before the weights)
* ``log.jsonl``               one JSON line per logged step and per validation
* ``samples/epoch_NNN.png``   grey input / prediction / ground truth for a fixed validation batch
* ``model.safetensors``       the fp16 generator exported for inference at the end

Resume (``resume=True``) restores networks, optimisers, the step, the epoch and the position in
the epoch: the shuffling order of an epoch is a pure function of (seed, epoch), so the run goes
on with the very batches it would have seen, losing nothing beyond the last checkpoint.

Distributed training (``torchrun --nproc_per_node N recolor train ...``; the process group is set
up by ``recolor.cli.distributed_context``): every network with trainable parameters is wrapped
in DistributedDataParallel for the run, the sampler gives each rank its share of every epoch,
the batch size is per rank, rank 0 alone writes checkpoints, logs, samples and the export, and
all ranks load the checkpoint on resume. BatchNorm stays per rank (statistics of the rank's own
batch, as in a one-process run with that batch size) unless ``sync_batchnorm`` (CUDA only).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from ..checkpoint import EMA_PREFIX, CheckpointError, load_checkpoint, load_optimizer_states, save_checkpoint, save_optimizer_states
from ..color import lab_normalized_to_rgb, rgb_to_lab_normalized
from ..data import EpochIndex, make_loader
from ..devices import resolve_device, resolve_precision  # noqa: F401 (resolve_device: re-exported for scripts)
from ..imageio import atomic_write_bytes, remove_stale_temp_files, save_image
from ..registry import Config, get_model_spec
from .recipe import Batch, Recipe

CHECKPOINT_NAME = "last.safetensors"
OPTIMIZER_NAME = "last.optim.safetensors"
EXPORT_NAME = "model.safetensors"
BEST_NAME = "best.safetensors"  # the generator with the lowest validation ab-L1 so far


class EpochSampler(Sampler[int]):
    """Shuffled indices that depend only on (seed, epoch), split across ranks, resumable mid-epoch."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0  # indices of this rank to skip at the start of the epoch (resume)

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = math.ceil(self.size / self.num_replicas)
        order += order[: per_rank * self.num_replicas - self.size]  # pad so every rank has as many
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        # EpochIndex: ints that also tell the dataset (seed, epoch), to seed the augmentation
        return iter(EpochIndex(index, self.seed, self.epoch) for index in self.indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.num_replicas) - self.skip)


@dataclass
class TrainSettings:
    out_dir: Path
    epochs: int = 10
    batch_size: int = 16
    workers: int = 1
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    save_every: int = 500  # steps; a checkpoint is also written at the end of every epoch
    log_every: int = 10
    max_steps: int | None = None
    decay_epochs: int = 0  # pix2pix's n_epochs_decay: learning rates fall linearly to zero over the last N epochs
    swa_from_epoch: int | None = None  # average the generator's weights over epochs >= this (see Trainer.accumulate_swa)
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the generator (see Trainer.update_ema)
    init_from: Path | None = None  # fine-tune: start from this checkpoint's networks
    max_minutes: float | None = None  # wall-clock budget: stop cleanly (checkpoint + export) after it
    seed: int = 0
    progress: bool = True
    samples: int = 8
    export: Path | None = None
    # distributed training (issue 6): rank 0 alone writes; the sampler splits the data
    rank: int = 0
    world_size: int = 1
    sync_batchnorm: bool = False  # SyncBatchNorm across ranks (torch supports it on CUDA only)
    extra: dict[str, Any] = field(default_factory=dict)


def lab_batch(rgb_uint8: torch.Tensor, device: torch.device, channels_last: bool) -> Batch:
    """uint8 RGB batch -> normalised L and ab (and float RGB) on the device."""
    rgb = rgb_uint8.to(device, non_blocking=True).float().div_(255.0)
    lightness, ab = rgb_to_lab_normalized(rgb)
    if channels_last:
        lightness, ab = lightness.contiguous(memory_format=torch.channels_last), ab.contiguous(memory_format=torch.channels_last)
    return {"L": lightness, "ab": ab, "rgb": rgb}


def build_recipe(model: str, config: Config, device: torch.device) -> Recipe:
    spec = get_model_spec(model)
    return spec.recipe(spec, config, device)


class Trainer:
    def __init__(self, recipe: Recipe, train_data: Dataset, val_data: Dataset | None, settings: TrainSettings, console: Console | None = None) -> None:
        self.recipe, self.train_data, self.val_data, self.settings = recipe, train_data, val_data, settings
        self.console = console or Console(stderr=True)
        self.out_dir = Path(settings.out_dir)
        self.is_main = settings.rank == 0
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.device = recipe.device
        recipe.amp_dtype = resolve_precision(settings.precision, self.device)
        if recipe.amp_dtype == torch.float16:
            recipe.scaler = torch.amp.GradScaler("cuda")
        for network in recipe.networks.values():
            network.to(self.device)
            if settings.channels_last:
                network.to(memory_format=torch.channels_last)
        if len(train_data) < settings.batch_size * settings.world_size:
            raise ValueError(f"only {len(train_data)} training images for batch size {settings.batch_size}: lower --batch-size")
        self.sampler = EpochSampler(len(train_data), settings.seed, shuffle=True, num_replicas=settings.world_size, rank=settings.rank)
        self.loader = make_loader(train_data, settings.batch_size, shuffle=False, workers=settings.workers, drop_last=True, sampler=self.sampler, pin_memory=self.device.type == "cuda")
        self.steps_per_epoch = len(self.sampler) // settings.batch_size
        self._fixed_val: torch.Tensor | None = None
        self.swa_state: dict[str, torch.Tensor] | None = None
        self.swa_count = 0
        if not 0.0 <= settings.ema_decay < 1.0:
            raise ValueError(f"ema decay {settings.ema_decay}: must be in [0, 1), e.g. 0.999")
        if settings.ema_decay and settings.swa_from_epoch is not None:
            raise ValueError("weight averaging: use the EMA (--ema) or SWA (--swa-from-epoch), not both")
        self.ema: torch.nn.Module | None = None  # the averaged generator, made by fit() once the weights are set
        self.distributed = settings.world_size > 1
        if settings.sync_batchnorm and self.device.type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA: torch's SyncBatchNorm runs on GPUs only")
        self._plain: dict[str, torch.nn.Module] | None = None  # the networks inside their DDP wrappers, during fit

    # --- checkpoints -------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.settings.seed}

    def save(self) -> None:
        if not self.is_main:
            return
        tensors = {}
        for name, network in self.recipe.networks.items():
            for key, value in unwrap(network).state_dict().items():
                tensors[f"{name}.{key}"] = value
        if self.ema is not None:
            tensors.update({f"{EMA_PREFIX}.{key}": value for key, value in self.ema.state_dict().items()})
        # optimiser first, weights second: the weights file is the commit point, and both carry the step
        save_optimizer_states(self.out_dir / OPTIMIZER_NAME, {name: opt.state_dict() for name, opt in self.recipe.optimizers.items()}, step=self.step)
        extra = {"trainer": self.trainer_state(), **self.recipe.extra_metadata()}
        save_checkpoint(self.out_dir / CHECKPOINT_NAME, tensors, self.recipe.spec.name, self.recipe.config, kind="training", extra=extra)
        atomic_write_bytes(self.out_dir / "trainer_state.json", json.dumps(self.trainer_state()).encode())

    def load(self) -> bool:
        """Restore the last checkpoint of the run folder; False when there is none."""
        path = self.out_dir / CHECKPOINT_NAME
        if not path.exists():
            return False
        checkpoint = load_checkpoint(path)
        if checkpoint.model != self.recipe.spec.name:
            raise CheckpointError(f"{path}: checkpoint is for model '{checkpoint.model}', not '{self.recipe.spec.name}'")
        if checkpoint.kind != "training" or "trainer" not in checkpoint.extra:
            raise CheckpointError(f"{path}: exported weights, not a training checkpoint: nothing to resume (fine-tune from it with --init-from)")
        step = checkpoint.extra["trainer"]["step"]
        # read before any network changes: a refused optimiser state leaves the recipe untouched
        states = load_optimizer_states(self.out_dir / OPTIMIZER_NAME, step=step)
        for name, network in self.recipe.networks.items():
            try:
                unwrap(network).load_state_dict(checkpoint.sub_state(name))
            except RuntimeError as exc:
                raise CheckpointError(f"{path}: {name} weights do not fit this config ({str(exc).splitlines()[0]})") from None
        if self.settings.ema_decay:
            # a run that had no EMA yet starts it from the resumed generator
            self.start_ema(checkpoint.sub_state(EMA_PREFIX) or None)
        for name, optimizer in self.recipe.optimizers.items():
            optimizer.load_state_dict(states[name])
        state = checkpoint.extra["trainer"]
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.recipe.load_extra_metadata(checkpoint.extra)
        return True

    # --- exponential moving average of the generator ---------------------------------------
    # GAN generators wander from step to step (validation ab-L1 swung by +-0.01 between epochs
    # of the shipped runs); the EMA of their weights is a standard remedy (Yazici et al. 2019,
    # "The unusual effectiveness of averaging in GAN training"). BatchNorm statistics are
    # averaged with the weights (as timm's ModelEmaV2), so none need recomputing. Not in the
    # papers: opt-in with --ema.
    def start_ema(self, state: dict[str, torch.Tensor] | None = None) -> None:
        generator = unwrap(self.recipe.generator)
        self.ema = copy.deepcopy(generator).requires_grad_(False)
        if state is not None:
            reference = self.ema.state_dict()
            self.ema.load_state_dict({key: value.to(reference[key].dtype) for key, value in state.items()})

    @torch.no_grad()
    def update_ema(self) -> None:
        weight = 1.0 - self.settings.ema_decay
        current = unwrap(self.recipe.generator).state_dict()
        for key, average in self.ema.state_dict().items():
            if average.is_floating_point():
                average.lerp_(current[key].to(average.dtype), weight)
            else:
                average.copy_(current[key])  # BatchNorm's batch counter

    def averaged_generator(self) -> contextlib.AbstractContextManager:
        """Validation, samples and export see the EMA generator while this is open (when there is one)."""
        return self._networks_replaced({"generator": self.ema} if self.ema is not None else {})

    # --- stochastic weight averaging (Izmailov et al. 2018) ------------------------------
    # GAN generators wander from epoch to epoch; the running mean of their weights at a low,
    # constant learning rate is a smoother, better-validated generator. Not in the papers: opt-in.
    def accumulate_swa(self) -> None:
        state = unwrap(self.recipe.generator).state_dict()
        self.swa_count += 1
        if self.swa_state is None:
            self.swa_state = {k: v.detach().float().clone() for k, v in state.items() if v.is_floating_point()}
            return
        for key, average in self.swa_state.items():
            average += (state[key].detach().float() - average) / self.swa_count

    @torch.no_grad()
    def apply_swa(self, max_batches: int = 50) -> None:
        """Load the averaged weights and recompute BatchNorm statistics on training batches."""
        generator = unwrap(self.recipe.generator)
        current = generator.state_dict()
        generator.load_state_dict({**current, **{k: v.to(current[k].dtype) for k, v in self.swa_state.items()}})
        norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
        generator.train()
        for index, batch in enumerate(self.loader):
            if index >= max_batches:
                break
            with self.recipe.autocast():
                generator(lab_batch(batch["rgb"], self.device, self.settings.channels_last)["L"])
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum

    def keep_if_best(self, val_ab_l1: float) -> None:
        """Export the generator to ``best.safetensors`` whenever validation ab-L1 improves.

        GAN training is noisy from epoch to epoch; the best validated generator is often not the
        last one. The figure is stored with the weights so the choice stays visible.
        """
        best_path = self.out_dir / BEST_NAME
        if best_path.exists():
            with contextlib.suppress(CheckpointError, KeyError):
                if load_checkpoint(best_path).extra.get("val_ab_l1", float("inf")) <= val_ab_l1:
                    return
        self.export(best_path, extra={"val_ab_l1": val_ab_l1})

    def initialize_from(self, path: Path) -> None:
        """Fine-tuning: start from another run's networks (fresh optimisers, step 0).

        A training checkpoint gives every network it has; an exported weights file gives the
        generator alone (the critic then starts from scratch).
        """
        checkpoint = load_checkpoint(path)
        if checkpoint.model != self.recipe.spec.name:
            raise CheckpointError(f"{path}: checkpoint is for model '{checkpoint.model}', not '{self.recipe.spec.name}'")
        for name, network in self.recipe.networks.items():
            state = checkpoint.sub_state(name) if checkpoint.kind == "training" else (checkpoint.tensors if name == "generator" else {})
            if state:
                target = unwrap(network)
                reference = target.state_dict()
                try:
                    target.load_state_dict({k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()})
                except RuntimeError as exc:
                    raise CheckpointError(f"{path}: {name} weights do not fit this config ({str(exc).splitlines()[0]})") from None
        if self.is_main:
            self.console.print(f"initialised {self.recipe.spec.name} from {escape(str(path))}")

    def export(self, path: Path, extra: dict[str, Any] | None = None) -> Path:
        """The generator alone, fp16, kind "weights": what `recolor colorize --model PATH` loads."""
        state = unwrap(self.recipe.generator).state_dict()
        extra = {"trained_steps": self.step, **self.recipe.extra_metadata(), **(extra or {})}
        if self.ema is not None:
            extra["ema_decay"] = self.settings.ema_decay
        return save_checkpoint(path, state, self.recipe.spec.name, self.recipe.config, kind="weights", extra=extra, dtype=torch.float16)

    # --- logging, samples, validation ----------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _val_loader(self) -> DataLoader | None:
        if self.val_data is None:
            return None
        return make_loader(self.val_data, self.settings.batch_size, shuffle=False, workers=self.settings.workers, drop_last=False)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """ab-L1 on the held-out folder, in normalised units (paper 002's figure) and in Lab units."""
        loader = self._val_loader()
        if loader is None:
            return {}
        for network in self.recipe.networks.values():
            network.eval()
        total, count = 0.0, 0
        for batch in loader:
            data = lab_batch(batch["rgb"], self.device, self.settings.channels_last)
            predicted = self.recipe.predict_ab(data["L"]).float()
            total += (predicted - data["ab"]).abs().mean(dim=(1, 2, 3)).sum().item()
            count += predicted.shape[0]
        for network in self.recipe.networks.values():
            network.train()
        return {"val_ab_l1": total / count, "val_ab_l1_lab": 110.0 * total / count}

    @torch.no_grad()
    def write_samples(self) -> None:
        if not self.is_main or self.settings.samples <= 0:
            return
        if self._fixed_val is None:
            source = self.val_data if self.val_data is not None else self.train_data
            count = min(self.settings.samples, len(source))
            self._fixed_val = torch.stack([source[i]["rgb"] for i in range(count)])
        data = lab_batch(self._fixed_val, self.device, False)
        generator = self.recipe.generator
        generator.eval()
        predicted = self.recipe.predict_ab(data["L"]).float()
        generator.train()
        grey = lab_normalized_to_rgb(data["L"], torch.zeros_like(predicted))
        colour = lab_normalized_to_rgb(data["L"], predicted)
        rows = torch.cat([torch.cat(list(images), dim=2) for images in (grey, colour, data["rgb"])], dim=1)
        picture = (rows.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        save_image(self.out_dir / "samples" / f"epoch_{self.epoch:03d}.png", np.ascontiguousarray(picture))

    def learning_rate_factor(self, total_steps: int) -> float:
        """The one learning-rate schedule of every recipe: constant, then a linear fall to 0.

        ``--decay-epochs N`` (pix2pix's schedule): the fall spans the last N epochs of the run.
        Otherwise a recipe's config may set ``lr_decay_epochs`` (paper 000 section 5.1: the
        fall starts at the first step and reaches 0 after that many epochs, however long the
        run). A pure function of the step, so a resumed run continues the same schedule.
        """
        if self.settings.decay_epochs > 0:
            decay_steps, end_step = self.settings.decay_epochs * self.steps_per_epoch, total_steps
        else:
            decay_steps = float(self.recipe.config.get("lr_decay_epochs", 0)) * self.steps_per_epoch
            end_step = decay_steps
        if decay_steps <= 0:
            return 1.0
        return min(1.0, max(0.0, (end_step - self.step) / decay_steps))

    def current_learning_rate(self) -> float:
        """The first optimiser's learning rate at the last step (for the log)."""
        optimizer = next(iter(self.recipe.optimizers.values()), None)
        return float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0

    def set_learning_rates(self, total_steps: int) -> None:
        # a pure function of the step, so a resumed run continues the same schedule
        factor = self.learning_rate_factor(total_steps)
        for optimizer in self.recipe.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor

    # --- the loop ------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, float]:
        settings = self.settings
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.out_dir, self.out_dir / "samples"):
                remove_stale_temp_files(folder)  # left by a run killed mid-write
        resumed = resume and self.load()
        if resume and not resumed and self.is_main:
            self.console.print(f"[yellow]no checkpoint in {escape(str(self.out_dir))}: starting a fresh run[/]")
        if not resumed:
            self.recipe.prepare(self.train_data)
            if settings.init_from is not None:
                self.initialize_from(settings.init_from)
            if settings.ema_decay:
                self.start_ema()
        elif self.is_main:
            self.console.print(f"resumed {self.recipe.spec.name} at step {self.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})")
        total_steps = settings.epochs * self.steps_per_epoch
        if settings.max_steps is not None:
            total_steps = min(total_steps, settings.max_steps)
        for optimizer in self.recipe.optimizers.values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])  # stored with the optimiser state, so resume keeps it
        last_val: dict[str, float] = {}
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        started = time.perf_counter()
        images_seen = 0

        def out_of_time() -> bool:
            late = settings.max_minutes is not None and time.perf_counter() - started > 60 * settings.max_minutes
            # every rank must stop at the same step, or the others wait forever in a collective
            return self._any_rank(late) if settings.max_minutes is not None else False

        with self._distributed_networks(), Progress(*columns, console=self.console, disable=not (settings.progress and self.is_main)) as progress:
            task = progress.add_task(f"train {self.recipe.spec.name}", total=total_steps, completed=self.step, losses="")
            while self.epoch < settings.epochs and self.step < total_steps and not out_of_time():
                self.sampler.epoch = self.epoch
                self.sampler.skip = self.batch_in_epoch * settings.batch_size
                for batch in self.loader:
                    data = lab_batch(batch["rgb"], self.device, settings.channels_last)
                    data["label"] = batch["label"].to(self.device)
                    self.set_learning_rates(total_steps)
                    losses = self.recipe.train_step(data)
                    if not all(math.isfinite(value) for value in losses.values()):
                        # stop before NaN weights reach a checkpoint; the last one on disk is still good
                        raise ValueError(
                            f"training diverged at step {self.step + 1} ({', '.join(f'{k} {v}' for k, v in losses.items())}); "
                            f"the last good checkpoint is in {self.out_dir}: try --precision fp32 or a lower --lr, then --resume"
                        )
                    self.step += 1
                    self.batch_in_epoch += 1
                    if self.ema is not None:
                        self.update_ema()
                    images_seen += data["L"].shape[0]
                    progress.update(task, completed=self.step, losses="  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
                    if self.step % settings.log_every == 0 or self.step == 1:
                        self.log({"step": self.step, "epoch": self.epoch, **losses, "lr": self.current_learning_rate()})
                    if self.step % settings.save_every == 0:
                        self.save()
                    if self.step >= total_steps or out_of_time():
                        break
                epoch_done = self.batch_in_epoch >= self.steps_per_epoch
                if epoch_done:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if settings.swa_from_epoch is not None and self.epoch >= settings.swa_from_epoch:
                        self.accumulate_swa()
                with self.plain_networks(), self.averaged_generator():  # rank 0 alone: no collective may run in here
                    last_val = self.validate() if self.is_main else {}
                    if last_val:
                        self.log({"step": self.step, "epoch": self.epoch, **last_val})
                        self.keep_if_best(last_val["val_ab_l1"])
                        progress.console.print(f"epoch {self.epoch}: step {self.step}, " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
                    self.write_samples()
                self.save()
            self._barrier()
        elapsed = time.perf_counter() - started
        if self.is_main:
            export_path = settings.export or (self.out_dir / EXPORT_NAME)
            if self.swa_count:
                self.apply_swa()
                last_val = self.validate()
                self.log({"step": self.step, "epoch": self.epoch, "swa_epochs": self.swa_count, **last_val})
                if last_val:
                    self.console.print(f"weight average of {self.swa_count} epochs: " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
            with self.averaged_generator():
                self.export(export_path, extra={"swa_epochs": self.swa_count} if self.swa_count else None)
            images_per_second = images_seen * settings.world_size / max(elapsed, 1e-9)  # every rank saw as many
            self.console.print(f"done: {self.step} steps, {images_per_second:.1f} img/s; weights in {escape(str(export_path))}")
        return {"steps": self.step, "seconds": elapsed, **last_val}

    # --- distributed ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _distributed_networks(self) -> Iterator[None]:
        """For the run: each network with trainable parameters inside DistributedDataParallel.

        Wrapped after ``prepare``/``load`` so that DDP's initial broadcast starts every rank from
        rank 0's weights whatever those did; the plain networks are put back at the end.
        """
        if not self.distributed:
            yield
            return
        plain = dict(self.recipe.networks)
        wrapped = {}
        for name, network in plain.items():
            if not any(parameter.requires_grad for parameter in network.parameters()):
                continue  # frozen feature extractors, statistics holders: nothing to synchronise
            if self.settings.sync_batchnorm:
                # keeps the Parameter objects, so the recipe's optimisers still own them
                network = plain[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
            device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.device.type == "cuda" else None
            # find_unused_parameters: some networks keep heads a step does not use (the AGE
            # encoder's log-variance); the graph walk it costs is small next to the convolutions
            wrapped[name] = DistributedNetwork(network, device_ids=device_ids, find_unused_parameters=True)
        hooks = [optimizer.register_step_pre_hook(self._average_direct_gradients) for optimizer in self.recipe.optimizers.values()]
        if self.recipe.scaler is not None:
            self.recipe.scaler = SyncedGradScaler("cuda")
        # one random stream per rank (dropout masks, noise inputs); the weights are synchronised
        torch.manual_seed(self.settings.seed + 7919 * (self.settings.rank + 1))
        self._plain = plain
        self.recipe.networks.update(wrapped)
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            self.recipe.networks.update(plain)
            self._plain = None

    def plain_networks(self) -> contextlib.AbstractContextManager:
        """The recipe's networks without their DDP wrappers, for work that one rank does alone."""
        return self._networks_replaced(self._plain or {})

    @contextlib.contextmanager
    def _networks_replaced(self, replacements: dict[str, torch.nn.Module]) -> Iterator[None]:
        """The recipe's networks of these names replaced while open, the originals back after."""
        originals = {name: self.recipe.networks[name] for name in replacements}
        self.recipe.networks.update(replacements)
        try:
            yield
        finally:
            self.recipe.networks.update(originals)

    def _average_direct_gradients(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        """Before a step: average the gradients of networks a recipe used around DDP's forward.

        A recipe that calls a sub-network or method of a wrapped network (``generator.decoder``)
        computes gradients DDP never sees; they are averaged here. Averaging gradients DDP has
        already averaged leaves them as they are, so this can only make ranks agree.
        """
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for network in self.recipe.networks.values():
            if isinstance(network, DistributedNetwork) and network.used_directly:
                for parameter in network.module.parameters():
                    if id(parameter) in owned and parameter.grad is not None:
                        dist.all_reduce(parameter.grad)
                        parameter.grad.div_(self.settings.world_size)

    def _any_rank(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        value = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier(device_ids=[torch.cuda.current_device()]) if self.device.type == "cuda" else dist.barrier()


class DistributedNetwork(DistributedDataParallel):
    """DistributedDataParallel that tolerates the ways recipes use their networks.

    * A forward with gradients off, or while every parameter is frozen (``Recipe.frozen``), runs
      the plain module: no backward into these weights follows, so DDP has nothing to reduce.
    * Attributes that DDP lacks (sub-networks, methods: ``generator.decoder``) come from the
      wrapped module; the network is then marked ``used_directly`` and the Trainer averages its
      gradients before each optimiser step (see ``Trainer._average_direct_gradients``).
    """

    def __init__(self, module: torch.nn.Module, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self.used_directly = False
        # DDP warns once when a network turns out to use every parameter after all: expected here
        warnings.filterwarnings("ignore", message="find_unused_parameters=True was specified in DDP constructor")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(parameter.requires_grad for parameter in self.module.parameters()):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "module" not in modules or name.startswith("__"):
                raise
            value = getattr(modules["module"], name)
            self.__dict__["used_directly"] = True
            return value


class SyncedGradScaler(torch.amp.GradScaler):
    """fp16 loss scaling whose skip-this-step decision is the same on every rank.

    With gradients that DDP averaged, an inf on one rank reaches all of them; gradients averaged
    only at step time (``_average_direct_gradients``) are checked before that, so the ranks
    pool their "found inf" flags here.
    """

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        super().unscale_(optimizer)
        if dist.is_available() and dist.is_initialized():
            for found in self._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values():
                dist.all_reduce(found, op=dist.ReduceOp.MAX)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or torch.compile) wrapper."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)
