"""Colorize many files fast: decoding and saving in threads, overlapped with batched model runs.

``colorize_files(colorizer, jobs)`` yields one :class:`ColorizeOutcome` per job, in the jobs'
order, while

* a feeder thread reads each file's header (its pixel count), reserves room for it in a budget
  of pixels in flight and hands it to the decode threads;
* decode threads turn files into :class:`~recolor.inference.DecodedPhoto` (8-bit pixels, pinned
  for a GPU) -- a file that cannot be read becomes an error outcome naming it, never an
  exception that stops the batch;
* the calling thread gathers photos of any sizes into batches and runs
  :meth:`Colorizer.colorize_photos` (lightness, resize, model, join: all on the device);
* write threads encode and save the results atomically and give the budget back.

Why threads and not DataLoader worker processes: Pillow's decoders and encoders and torch's
kernels release the GIL, so threads really do run side by side; a decoded photo is shared, not
pickled through shared memory (a 24-megapixel photo is 72 MB); and one budget can bound the
memory of every stage at once. The budget counts pixels from the moment a file is opened until
its output is written, so a queue of big scans never multiplies memory: with the default of
32 megapixels a 24-megapixel photo is in flight alone (the CLI peaks at about 1.1 GB on one;
with two in flight, four in a row took a process to 1.7 GB), while hundreds of ordinary photos
fit.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
from PIL import Image

from .imageio.decoding import DEFAULT_MAX_PIXELS, ImageReadError, file_problem, silence_pillow_warnings
from .imageio.encoders import save_image
from .imageio.metadata import ImageMetadata
from .imageio.photo import DecodedPhoto, decode_photo
from .colorizing import NonFiniteOutputError, PhotoColorizer
from .threads import chosen_threads, usable_cpus
from .planning import ColorizeJob  # the job type is the planner's (recolor.planning.plan_colorize); re-exported

if TYPE_CHECKING:
    import torch

DEFAULT_PIXELS_IN_FLIGHT = 32_000_000


def default_workers(device: torch.device) -> int:
    """Decoding (and as many saving) threads: on a GPU, enough to feed it from the CPUs this process
    may use; on the CPU the model itself computes on the threads :mod:`recolor.threads` chose, so
    half as many (more only contend for those CPUs and the GIL)."""
    if device.type == "cuda":
        return max(1, min(8, usable_cpus()))
    return max(1, chosen_threads() // 2)


@dataclass
class ColorizeOutcome:
    job: ColorizeJob
    error: str | None = None  # one line naming the file
    width: int = 0
    height: int = 0
    was_colour: bool = False
    note: str | None = None  # one line worth telling even though the file succeeded

    @property
    def ok(self) -> bool:
        return self.error is None


class PixelBudget:
    """Pixels reserved by photos between opening and writing. One photo larger than the whole
    budget still gets through, alone, once nothing else is in flight."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.peak = max(1, limit), 0, 0
        self._changed = threading.Condition()
        self.closed = False

    def acquire(self, pixels: int) -> bool:
        with self._changed:
            while self.used and self.used + pixels > self.limit and not self.closed:
                self._changed.wait()
            if self.closed:
                return False
            self.used += pixels
            self.peak = max(self.peak, self.used)
            return True

    def release(self, pixels: int) -> None:
        with self._changed:
            self.used -= pixels
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


def header_pixels(path: Path) -> int:
    """Width x height from the file's header alone (0 when it cannot be read: decoding will say why).

    The file type is checked first: opening a named pipe would wait for a writer forever.
    """
    if file_problem(path):
        return 0
    try:
        silence_pillow_warnings()  # a DecompressionBombWarning: the size is checked where the file is decoded (--max-pixels)
        with Image.open(path) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - any failure is reported by the decode step, with its reason
        return 0


def _decode(job: ColorizeJob, max_pixels: int, pin_memory: bool, as_array: bool = False) -> DecodedPhoto | str:
    try:
        photo = decode_photo(job.source, max_pixels=max_pixels, pin_memory=pin_memory, as_array=as_array)
        if photo.frames > 1 and os.path.realpath(job.source) == os.path.realpath(job.target):
            # only the first frame is colorized: replacing the file would destroy the others
            return f"{job.source}: {photo.frames} frames (pages); replacing it would keep only the first, so it is left as it is (write to a folder with -o)"
        return photo
    except ImageReadError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a worker's failure becomes this file's error record
        return f"{job.source}: could not read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


@dataclass
class _Written:
    """What a write needs besides the pixels: the decoded photo itself can be freed meanwhile."""

    width: int
    height: int
    alpha: object
    metadata: ImageMetadata
    was_colour: bool
    note: str | None = None

    @classmethod
    def of(cls, photo: DecodedPhoto) -> "_Written":
        width, height = photo.size
        note = f"{photo.path}: {photo.frames} frames, only the first is colorized" if photo.frames > 1 else None
        return cls(width, height, photo.alpha, photo.metadata, photo.was_colour, note)


def _write(job: ColorizeJob, rgb: torch.Tensor | np.ndarray, ready, info: _Written, budget: PixelBudget, pixels: int) -> ColorizeOutcome:
    try:
        if ready is not None:
            ready.synchronize()  # the non-blocking copy from the GPU has landed
        save_image(job.target, np.asarray(rgb), info.alpha, info.metadata)
        return ColorizeOutcome(job, width=info.width, height=info.height, was_colour=info.was_colour, note=info.note)
    except (OSError, ValueError) as exc:
        return ColorizeOutcome(job, error=f"{job.target}: could not write ({exc})")
    except Exception as exc:  # noqa: BLE001
        return ColorizeOutcome(job, error=f"{job.target}: could not write ({type(exc).__name__}: {exc})")
    finally:
        budget.release(pixels)


def colorize_files(
    colorizer: PhotoColorizer,
    jobs: Iterable[ColorizeJob],
    batch_size: int = 8,
    workers: int | None = None,
    pixels_in_flight: int = DEFAULT_PIXELS_IN_FLIGHT,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[ColorizeOutcome]:
    """Colorize files to their targets; one outcome per job, in order (see the module's doc).

    ``workers`` threads decode and as many write (default: :func:`default_workers`). A batch
    holds up to ``batch_size`` photos and at most half the pixel budget.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size}: must be 1 or more")
    workers = workers or default_workers(colorizer.device)
    budget = PixelBudget(pixels_in_flight)
    batch_pixels = max(1, pixels_in_flight // 2)
    pin_memory = colorizer.device.type == "cuda"
    announced: queue.Queue = queue.Queue()
    decoders = ThreadPoolExecutor(workers, thread_name_prefix="recolor-decode")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="recolor-write")

    def run_decode(job: ColorizeJob, slot: Future) -> None:
        slot.set_result(_decode(job, max_image_pixels, pin_memory, colorizer.decodes_to_arrays))

    def feed() -> None:
        # Announce each job (with its size) before waiting for room, so that the batcher can
        # close a batch rather than wait for a photo that only fits once that batch is written.
        try:
            for job in jobs:
                pixels = header_pixels(job.source)
                slot: Future = Future()
                announced.put((job, pixels, slot))
                if not budget.acquire(pixels):
                    return
                decoders.submit(run_decode, job, slot)
        except BaseException as exc:  # noqa: BLE001 - surfaces in the calling thread
            announced.put(exc)
        finally:
            announced.put(None)

    pending: deque[Future | ColorizeOutcome] = deque()

    def run_batch(batch: list[tuple[ColorizeJob, int, Future]]) -> None:
        decoded = [(job, pixels, slot.result()) for job, pixels, slot in batch]
        batch.clear()  # drop our references: the pixels go once colorized
        photos = [photo for _, _, photo in decoded if not isinstance(photo, str)]
        hints = [job.hints for job, _, photo in decoded if not isinstance(photo, str)]
        results = iter(_colorize_batch(colorizer, photos, hints) if photos else [])
        photos.clear()
        for job, pixels, photo in decoded:  # outcomes queue up in the jobs' order
            result = photo if isinstance(photo, str) else next(results)
            if isinstance(result, str):
                budget.release(pixels)
                pending.append(ColorizeOutcome(job, error=result if result is photo else f"{job.source}: {result}"))
            else:
                rgb, ready = result
                pending.append(writers.submit(_write, job, rgb, ready, _Written.of(photo), budget, pixels))
        decoded.clear()

    def finished(block: bool) -> Iterator[ColorizeOutcome]:
        while pending and (block or isinstance(pending[0], ColorizeOutcome) or pending[0].done()):
            head = pending.popleft()
            yield head if isinstance(head, ColorizeOutcome) else head.result()

    feeder = threading.Thread(target=feed, name="recolor-feed", daemon=True)
    feeder.start()
    batch: list[tuple[ColorizeJob, int, Future]] = []
    held = 0
    try:
        while (item := announced.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            pixels = item[1]
            if batch and held + pixels > batch_pixels:
                run_batch(batch)
                held = 0
                yield from finished(block=False)
            batch.append(item)
            held += pixels
            if len(batch) >= batch_size or held >= batch_pixels:
                run_batch(batch)
                held = 0
                yield from finished(block=False)
        if batch:
            run_batch(batch)
        yield from finished(block=True)
    finally:
        budget.close()
        decoders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        feeder.join(timeout=5)


def _gpu_out_of_memory() -> type[BaseException]:
    """torch's CUDA out-of-memory error; where torch was never imported (the ONNX engine) no GPU
    can run out of memory, and a class nothing raises stands in."""
    torch = sys.modules.get("torch")
    return torch.cuda.OutOfMemoryError if torch is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def _colorize_batch(colorizer: PhotoColorizer, photos: list[DecodedPhoto], hints: list | None = None) -> list:
    """Per photo: (host RGB tensor, ready event), or an error message. A batch that runs the GPU
    out of memory, or whose colour comes out non-finite for some photo, is run again one photo at
    a time: only the photos that fail are reported."""
    try:
        hints = hints or [None] * len(photos)
        outputs, ready = colorizer.colorize_photos(photos, hints)
        return [(out, ready) for out in outputs]
    except (_gpu_out_of_memory(), NonFiniteOutputError) as exc:
        if len(photos) == 1:
            return [str(exc) if isinstance(exc, NonFiniteOutputError) else "out of GPU memory (try a smaller --batch-size or --device cpu)"]
        if not isinstance(exc, NonFiniteOutputError):
            sys.modules["torch"].cuda.empty_cache()
        return [result for photo, hint in zip(photos, hints) for result in _colorize_batch(colorizer, [photo], [hint])]
    except (RuntimeError, MemoryError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"colorization failed ({message})"] * len(photos)
