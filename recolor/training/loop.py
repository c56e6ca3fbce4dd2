"""The one training loop every recipe runs in: the :class:`Trainer` orchestrates named parts.

* ``batches.py``        the order of the images (a pure function of seed and epoch) and the Lab batch
* ``checkpointing.py``  the run folder's weights files: save, resume, best, export, fine-tuning
* ``averaging.py``      the generator's weight average, EMA or SWA, behind one interface
* ``distributed.py``    torchrun: DDP wrapping and the rank helpers
* ``schedule.py``       the learning-rate schedule
* ``reporting.py``      ``log.jsonl``, validation and the sample sheets

Resume (``resume=True``) restores networks, optimisers, the weight average, the fp16 loss scale,
the random streams (dropout's among them), the step, the epoch and the position in the epoch, so
the run goes on with the very batches and draws it would have seen, losing nothing beyond the last
checkpoint: on one CPU process, a run killed and resumed ends bit for bit where the uninterrupted
run ends (tests/test_resume.py). Under torchrun each rank reseeds its stream for the run (see
``distributed.py``), so a resumed distributed run draws other dropout masks. What a resumed run
may change, and what it refuses:

* honoured: the learning rate (the config's ``lr``; it applies from the next step, within the
  same schedule), ``epochs``, ``decay_epochs``, ``max_steps``, ``max_minutes``, ``save_every``,
  ``ema_decay``/``swa_from_epoch`` (an average the run did not have starts from the resumed
  generator), ``precision``, the validation data, ``export`` and the number of workers;
* refused with a one-line ValueError: another ``seed`` (it fixes the data order and crops);
  ``recolor train`` also refuses every other config change (``--set``, ``--size``,
  ``--batch-size``, ``--encoder-weights``): the run rebuilds its own networks;
* ``init_from`` applies to a fresh run only (a run folder without a checkpoint).

Distributed training (``torchrun --nproc_per_node N recolor train ...``): see ``distributed.py``;
the sampler gives each rank its share of every epoch, the batch size is per rank, and all ranks
load the checkpoint on resume.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import Dataset

from ..data import make_loader
from ..devices import resolve_device, resolve_precision  # noqa: F401 (resolve_device: re-exported for scripts)
from ..imageio import remove_stale_temp_files
from ..registry import Config, get_model_spec
from .averaging import weight_average
from .batches import EpochSampler, lab_batch  # noqa: F401 (EpochSampler: re-exported)
from .checkpointing import BEST_NAME, CHECKPOINT_NAME, EXPORT_NAME, OPTIMIZER_NAME, RunCheckpoints  # noqa: F401 (re-exported)
from .distributed import DistributedRun, unwrap  # noqa: F401 (unwrap: re-exported)
from .random_state import capture_random_streams, restore_random_streams
from .recipe import Recipe
from .reporting import SampleSheets, append_log, validation_ab_l1
from .schedule import LinearDecaySchedule


class TrainingDiverged(RuntimeError):
    """A step's loss was NaN or infinite; the run stopped before such weights reached a checkpoint."""


@dataclass
class TrainSettings:
    out_dir: Path
    epochs: int = 10
    batch_size: int = 16
    workers: int = 1
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    save_every: int = 500  # steps; a checkpoint is also written at the end of every epoch
    log_every: int = 10
    max_steps: int | None = None
    decay_epochs: int = 0  # pix2pix's n_epochs_decay: learning rates fall linearly to zero over the last N epochs
    swa_from_epoch: int | None = None  # average the generator's weights over epochs >= this (see averaging.EpochAverage)
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the generator (see averaging.ExponentialAverage)
    init_from: Path | None = None  # fine-tune: start a fresh run from this checkpoint's networks
    max_minutes: float | None = None  # wall-clock budget: stop cleanly (checkpoint + export) after it
    seed: int = 0
    progress: bool = True
    samples: int = 8
    export: Path | None = None
    # distributed training: rank 0 alone writes; the sampler splits the data
    rank: int = 0
    world_size: int = 1
    sync_batchnorm: bool = False  # SyncBatchNorm across ranks (torch supports it on CUDA only)


def build_recipe(model: str, config: Config, device: torch.device) -> Recipe:
    spec = get_model_spec(model)
    return spec.recipe(spec, config, device)


class Trainer:
    def __init__(self, recipe: Recipe, train_data: Dataset, val_data: Dataset | None, settings: TrainSettings, console: Console | None = None) -> None:
        self.recipe, self.train_data, self.val_data, self.settings = recipe, train_data, val_data, settings
        self.console = console or Console(stderr=True)
        self.out_dir = Path(settings.out_dir)
        self.is_main = settings.rank == 0
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.images_seen = 0
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
        self.loader = make_loader(train_data, settings.batch_size, shuffle=False, workers=settings.workers, drop_last=True, sampler=self.sampler,
                                  pin_memory=self.device.type == "cuda", seed=settings.seed)
        self.steps_per_epoch = len(self.sampler) // settings.batch_size  # of this process: its share of the data
        recipe.steps_per_epoch = self.steps_per_epoch
        self.average = weight_average(settings.ema_decay, settings.swa_from_epoch)
        self.distributed = DistributedRun(recipe, settings.rank, settings.world_size, settings.seed, settings.sync_batchnorm)
        self.checkpoints = RunCheckpoints(recipe, self.out_dir)
        # built before any optimiser state is restored: its base rates are the config's
        self.schedule = LinearDecaySchedule(recipe.optimizers, self.steps_per_epoch, settings.decay_epochs, recipe.config.get("lr_decay_epochs", 0))
        self.samples = SampleSheets(val_data if val_data is not None else train_data, settings.samples if self.is_main else 0)
        self._deadline: float | None = None

    # --- run state -------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.settings.seed}

    def save(self) -> None:
        if self.is_main:
            self.checkpoints.save(self.trainer_state(), self.average, capture_random_streams())

    def load(self) -> bool:
        """Restore the last checkpoint of the run folder; False when there is none."""
        checkpoint = self.checkpoints.read_last()
        if checkpoint is None:
            return False
        state = checkpoint.extra["trainer"]
        if state.get("seed", self.settings.seed) != self.settings.seed:
            raise ValueError(f"{self.out_dir} was trained with --seed {state['seed']} (it fixes the data order and crops): "
                             f"resume with --seed {state['seed']}, or train into a new --out")
        run_state = self.checkpoints.restore(checkpoint)
        self.average.start(self.recipe, checkpoint)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if "torch" in run_state.tensors:  # last: nothing may draw between here and the next step (runs from before have none)
            restore_random_streams(run_state.tensors, run_state.facts)
        return True

    def initialize_from(self, path: Path) -> None:
        """Fine-tuning: start from another run's networks (see ``RunCheckpoints.initialize_from``)."""
        self.checkpoints.initialize_from(path)
        if self.is_main:
            self.console.print(f"initialised {self.recipe.spec.name} from {escape(str(path))}")

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            append_log(self.out_dir, record)

    def validate(self) -> dict[str, float]:
        return validation_ab_l1(self.recipe, self.val_data, self.settings.batch_size, self.settings.workers, self.settings.channels_last)

    # --- the loop --------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, float]:
        settings = self.settings
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.out_dir, self.out_dir / "samples"):
                remove_stale_temp_files(folder)  # left by a run killed mid-write
        self._start(resume)
        total_steps = settings.epochs * self.steps_per_epoch
        if settings.max_steps is not None:
            total_steps = min(total_steps, settings.max_steps)
        started = self._started = time.perf_counter()
        self.images_seen = 0
        self._deadline = None if settings.max_minutes is None else started + 60 * settings.max_minutes
        last_val: dict[str, float] = {}
        with self.distributed.wrapped_networks(), self._progress() as progress:
            task = progress.add_task(f"train {self.recipe.spec.name}", total=total_steps, completed=self.step, losses="")
            while self.epoch < settings.epochs and self.step < total_steps and not self._out_of_time():
                self._run_epoch(progress, task, total_steps)
                last_val = self._end_epoch(progress)
            self.distributed.barrier()
        elapsed = time.perf_counter() - started
        if self.is_main:
            last_val = self._finish(elapsed, last_val)
        return {"steps": self.step, "seconds": elapsed, **last_val}

    def _start(self, resume: bool) -> None:
        """Resume from the run folder's checkpoint, or begin a fresh run (data statistics, fine-tuning, average)."""
        resumed = resume and self.load()
        if resume and not resumed and self.is_main:
            self.console.print(f"[yellow]no checkpoint in {escape(str(self.out_dir))}: starting a fresh run[/]")
        if resumed:
            if self.is_main:
                self.console.print(f"resumed {self.recipe.spec.name} at step {self.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})")
            return
        self.recipe.prepare(self.train_data)
        if self.settings.init_from is not None:
            self.initialize_from(self.settings.init_from)
        self.average.start(self.recipe)

    def _progress(self) -> Progress:
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        return Progress(*columns, console=self.console, disable=not (self.settings.progress and self.is_main))

    def _out_of_time(self) -> bool:
        if self._deadline is None:
            return False
        # every rank must stop at the same step, or the others wait forever in a collective
        return self.distributed.any_rank(time.perf_counter() > self._deadline)

    def _run_epoch(self, progress: Progress, task: Any, total_steps: int) -> None:
        """The rest of the current epoch (from the resumed position), or up to the step or time limit."""
        settings = self.settings
        self.sampler.epoch = self.epoch
        self.sampler.skip = self.batch_in_epoch * settings.batch_size
        for batch in self.loader:
            losses = self._train_step(batch, total_steps)
            progress.update(task, completed=self.step, losses="  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
            if self.step % settings.log_every == 0 or self.step == 1:
                # seconds: wall time since this process began fitting (a resumed run counts from its restart)
                seconds = round(time.perf_counter() - self._started, 3)
                self.log({"step": self.step, "epoch": self.epoch, **losses, "lr": self.schedule.current(), "seconds": seconds})
            if self.step % settings.save_every == 0:
                self.save()
            if self.step >= total_steps or self._out_of_time():
                break
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            self.average.after_epoch(self.recipe, self.epoch)

    def _train_step(self, batch: dict[str, torch.Tensor], total_steps: int) -> dict[str, float]:
        data = lab_batch(batch["rgb"], self.device, self.settings.channels_last)
        data["label"] = batch["label"].to(self.device)
        self.schedule.apply(self.step, total_steps)
        losses = self.recipe.run_train_step(data)
        if not all(math.isfinite(value) for value in losses.values()):
            # stop before NaN weights reach a checkpoint; the last one on disk is still good
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1} ({', '.join(f'{k} {v}' for k, v in losses.items())}); "
                f"the last good checkpoint is in {self.out_dir}: try --precision fp32 or a lower --lr, then --resume"
            )
        self.step += 1
        self.batch_in_epoch += 1
        self.average.after_step(self.recipe)
        self.images_seen += data["L"].shape[0]
        return losses

    def _end_epoch(self, progress: Progress) -> dict[str, float]:
        """Validation, best weights and samples (rank 0, with the averaged generator when there is one), then a checkpoint."""
        last_val: dict[str, float] = {}
        with self.distributed.plain_networks(), self.average.in_use(self.recipe):  # rank 0 alone: no collective may run in here
            if self.is_main:
                last_val = self.validate()
                self.samples.write(self.recipe, self.out_dir / "samples" / f"epoch_{self.epoch:03d}.png")
            if last_val:
                self.log({"step": self.step, "epoch": self.epoch, **last_val})
                self.checkpoints.keep_if_best(last_val["val_ab_l1"], self.step, self.average.export_extra())
                progress.console.print(f"epoch {self.epoch}: step {self.step}, " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
        self.save()
        return last_val

    def _finish(self, elapsed: float, last_val: dict[str, float]) -> dict[str, float]:
        """Rank 0: the weight average into the generator (SWA), its validation, the export."""
        settings = self.settings
        export_path = settings.export or (self.out_dir / EXPORT_NAME)
        # the batches of the current epoch from its start, wherever this process's loop left the sampler
        # (a resumed run's may stand mid-epoch, or where it was built): a run killed and resumed reads the same
        self.sampler.epoch, self.sampler.skip = self.epoch, 0
        inputs = (lab_batch(batch["rgb"], self.device, settings.channels_last)["L"] for batch in self.loader)
        facts = self.average.finish(self.recipe, inputs)
        if facts:
            last_val = self.validate()
            self.log({"step": self.step, "epoch": self.epoch, **facts, **last_val})
            if last_val:
                described = ", ".join(f"{k} {v}" for k, v in facts.items())
                self.console.print(f"weight average ({described}): " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
        with self.average.in_use(self.recipe):
            self.checkpoints.export(export_path, self.step, self.average.export_extra())
        images_per_second = self.images_seen * settings.world_size / max(elapsed, 1e-9)  # every rank saw as many
        self.console.print(f"done: {self.step} steps, {images_per_second:.1f} img/s; weights in {escape(str(export_path))}")
        return last_val
