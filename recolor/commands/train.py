"""`recolor train`: train any registered model on a folder of colour photos (resumable, torchrun-aware)."""
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import DEFAULT_MODEL
from ..seeds import MAX_SEED
from ..threads import usable_cpus  # no torch: the default of --workers
from ._shared import THREADS_HELP, checked_seed, err, fail, shown


def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `recolor models`).")] = DEFAULT_MODEL,
    data: Annotated[Path, typer.Option(help="Folder tree of colour photos for training.")] = Path("data/train"),
    val: Annotated[Optional[Path], typer.Option(help="Held-out folder for validation ab-L1 and samples.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs, samples.")] = Path("runs/train"),
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Default: the model's.")] = None,
    size: Annotated[Optional[int], typer.Option(min=1, help="Training crop size (default: the model's image_size); must fit the network (see --set).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the paper's).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Config override key=value (repeatable), e.g. --set ngf=32.")] = None,
    encoder_weights: Annotated[Optional[str], typer.Option("--encoder-weights", help="Pre-trained encoder (resnet18, effnet-unet): imagenet, none, or a local .safetensors/.pth state dict.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = min(4, max(1, usable_cpus() // 2)),
    save_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps (and every epoch).")] = 500,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after N steps in all.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget in minutes (above 0); stops cleanly (checkpoint + export).")] = None,
    decay_epochs: Annotated[int, typer.Option("--decay-epochs", min=0, help="Learning rates fall linearly to zero over the last N of --epochs (pix2pix's n_epochs_decay); 0: constant.")] = 0,
    seed: Annotated[int, typer.Option(help=f"Random seed, 0 to {MAX_SEED}: initial weights, data order, crops and flips.")] = 0,
    min_chroma: Annotated[Optional[float], typer.Option("--min-chroma", min=0.0, help="Skip training photos whose mean Lab chroma (64 px thumbnail) is below this: faded, sepia and near-grey photos teach grey. Default 4 (only near-greyscale); validation keeps every photo.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Start afresh in an --out that holds an earlier run: its checkpoints, log, exported weights and samples are deleted first (default: refuse a non-empty --out).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint (a fresh run when it has none). May change: --lr, --epochs, --decay-epochs, --max-steps, --max-minutes, --ema, --swa-from-epoch; refused: --set, --size, --batch-size, --encoder-weights, --seed.")] = False,
    swa_from_epoch: Annotated[Optional[int], typer.Option("--swa-from-epoch", min=1, help="Export the average of the generator's weights over the epochs from this one on (BatchNorm statistics recomputed).")] = None,
    ema: Annotated[float, typer.Option("--ema", min=0.0, max=0.9999, help="Validate and export the exponential moving average of the generator's weights with this decay (e.g. 0.999); 0: off.")] = 0.0,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Fine-tune: start from this model's shipped weights (a name, as --model takes) or checkpoint (a run's last.safetensors or exported weights); its architecture config is used.")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Also write the fp16 inference weights here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    sync_batchnorm: Annotated[bool, typer.Option("--sync-batchnorm", help="Under torchrun on GPUs: BatchNorm statistics over all ranks' batches (default: each rank's own).")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
) -> None:
    """Train any registered model on a folder of colour photos (CPU or CUDA, resumable; multi-GPU/multi-machine under torchrun)."""
    import torch

    from ..checkpoint import CheckpointError, find_weights
    from ..data import NoUsablePhotos
    from ..options import said_on_the_command_line
    from ..planning import distributed_context, end_distributed, parse_overrides, skipped_files_notes, training_config, training_datasets
    from ..run_folder import check_run_paths, clear_run_folder, config_source, saved_step
    from ..registry import get_model_spec
    from ..threads import use_threads
    from ..training.loop import TrainingDiverged, TrainSettings, Trainer, build_recipe, resolve_device

    checked_seed(seed)
    if max_minutes is not None and not max_minutes > 0:
        fail(f"--max-minutes {max_minutes:g}: must be above 0 (leave it out for no time limit)")
    use_threads(threads)
    try:
        check_run_paths(out, export, resume=resume, overwrite=overwrite)  # before the model and the photos are loaded
        spec = get_model_spec(model)
        if init_from is not None:  # a model name, as --model takes, or a file
            try:
                init_from = find_weights(init_from)
            except KeyError:
                fail(f"--init-from {init_from}: no such checkpoint file, nor a model name (`recolor models` lists them)")
        options = {"lr": lr, "image_size": size, "batch_size": batch_size, "encoder_weights": encoder_weights}
        overrides = parse_overrides(set_ or []) | {key: value for key, value in options.items() if value is not None}
        config = training_config(spec, overrides, out, resume, init_from)
        source = config_source(out, resume, init_from)
        try:
            spec.check_image_size(config)
        except ValueError as exc:
            if size is None and source is not None:  # the size is the file's own: name the file
                raise CheckpointError(f"{source}: its config's {exc}") from None
            raise
        torch.manual_seed(seed)
        train_data, val_data = training_datasets(spec, config, data, val, min_chroma=min_chroma)
        for note in skipped_files_notes(train_data, val_data):
            err().print(f"note: {shown(note)}", highlight=False)
        dist = distributed_context(device)
        try:
            settings = TrainSettings(
                out_dir=out, epochs=epochs, batch_size=config["batch_size"], workers=workers,
                precision=precision, save_every=save_every, max_steps=max_steps, max_minutes=max_minutes, decay_epochs=decay_epochs, seed=seed, progress=not quiet,
                export=export, init_from=init_from, swa_from_epoch=swa_from_epoch, ema_decay=ema, rank=dist["rank"], world_size=dist["world_size"], sync_batchnorm=sync_batchnorm,
            )
            recipe = build_recipe(spec.name, config, resolve_device(str(dist["device"])))
            trainer = Trainer(recipe, train_data, val_data, settings, console=err())
            if overwrite and dist["rank"] == 0:
                clear_run_folder(out)
            result = trainer.fit(resume=resume)
        finally:
            end_distributed(dist)
    except KeyboardInterrupt:
        step = saved_step(out)
        err().print(f"stopped: saved at step {step}; continue with --resume" if step is not None else
                    "stopped before the first checkpoint: nothing saved (a checkpoint is written every --save-every steps)", highlight=False)
        raise typer.Exit(130)
    except TrainingDiverged as exc:  # not bad usage: exit 1, the last good checkpoint stays
        fail(str(exc), 1)
    except NoUsablePhotos:  # raised in a DataLoader worker, whose re-raise wraps the message in a traceback
        fail(f"{data}: no usable colour photo: every photo is unreadable or its mean chroma is below {train_data.min_chroma:g} (--min-chroma)", 1)
    except (KeyError, ValueError, FileNotFoundError, CheckpointError) as exc:
        fail(said_on_the_command_line(exc))
    except OSError as exc:  # a full disk, a read-only run folder: the run stops, its last checkpoint stays good
        fail(f"{exc.filename or out}: {exc.strerror or exc} (the last checkpoint in {out} is intact; --resume continues from it)", 1)
    if dist["rank"] == 0:
        print(json.dumps({"model": spec.name, "out": str(out), **result}))
