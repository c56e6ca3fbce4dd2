"""The ONNX engine: a colorization model exported by ``recolor export`` run through ONNX Runtime,
with every per-pixel step in numpy (:mod:`recolor.cie`). Neither this module nor anything it
imports loads torch, timm or torchvision, so a one-photo run starts in well under a second where
the torch engine first spends seconds importing (benchmarks/README.md, start-up).

It takes what :class:`recolor.inference.Colorizer` takes and gives what it gives (photos decoded
as numpy arrays, ``hints`` included: the hint inputs are made by the torch engine's own code,
which imports torch only when a photo has hints) and differs from it by at most 1e-3 in
normalised ab (tests/test_onnx.py, benchmarks/engines_agree.py).

An exported file carries what it needs as ONNX metadata (``recolor.*`` keys, see
:class:`OnnxModelInfo`), the SHA-256 of the weights it came from among them: a file next to its
``.safetensors`` is used only while the two still match.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cie import join_levels, lightness_from_pixels, network_input
from .colorizing import NonFiniteOutputError, PhotoColorizer, square_size
from .shipped import weights_dirs

ONNX_SUFFIX = ".onnx"
METADATA_PREFIX = "recolor."
LIGHTNESS_INPUT, LOCAL_HINTS_INPUT, GLOBAL_HINTS_INPUT, AB_OUTPUT = "lightness", "local_hints", "global_hints", "ab"
NORMALISATION = {"lightness": "L / 50 - 1 (CIE L* in 0..100 -> -1..1)", "ab": "ab / 110 (CIE a*, b*)",
                 "local_hints": "(a / 110, b / 110, mask) per pixel of the network's input", "global_hints": "recolor.hints.global_hint"}


class OnnxEngineError(ValueError):
    """No usable ONNX export: the one-line message says why and how to make one."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OnnxModelInfo:
    """What ``recolor export`` writes into the file's metadata (each a ``recolor.<field>`` key, JSON)."""

    model: str
    config: dict
    version: str
    inputs: list
    outputs: list
    normalisation: dict
    weights_sha256: str
    image_size: int
    multiple: int
    global_hint_length: int  # 0: the network takes no hints
    dynamic_size: bool

    def to_metadata(self) -> dict[str, str]:
        return {METADATA_PREFIX + key: json.dumps(value) for key, value in self.__dict__.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: Path) -> "OnnxModelInfo":
        try:
            return cls(**{key: json.loads(metadata[METADATA_PREFIX + key]) for key in cls.__dataclass_fields__})
        except (KeyError, ValueError, TypeError) as exc:
            raise OnnxEngineError(f"{source}: not an ONNX file written by `recolor export` (its metadata lacks {exc})") from None


def looks_like_path(model: str | Path) -> bool:
    text = str(model)
    return isinstance(model, Path) or text.endswith((ONNX_SUFFIX, ".safetensors")) or any(sep and sep in text for sep in (os.sep, os.altsep))


def export_hint(model: str | Path) -> str:
    """How to make the ONNX file that ``model`` lacks."""
    target = Path(model).with_suffix(ONNX_SUFFIX) if looks_like_path(model) else Path(f"{model}{ONNX_SUFFIX}")
    use = f"then --model {target}" if not str(model).endswith(".safetensors") else "it is used from beside the weights"
    return f"`recolor export {model} --format onnx -o {target}` ({use}), or use --engine torch"


def find_onnx(model: str | Path) -> tuple[Path, Path | None]:
    """(the ONNX file, the .safetensors file it must match or None) for a model name, an ``.onnx``
    path or a ``.safetensors`` path with its export beside it; OnnxEngineError when there is none."""
    if str(model).endswith(ONNX_SUFFIX):
        if not Path(model).is_file():
            raise OnnxEngineError(f"{model}: no such ONNX file")
        return Path(model), None
    if looks_like_path(model):
        weights = Path(model)
        if weights.is_file() and weights.with_suffix(ONNX_SUFFIX).is_file():
            return weights.with_suffix(ONNX_SUFFIX), weights
        raise OnnxEngineError(f"{model} has no ONNX export beside it: {export_hint(model)}")
    for folder in weights_dirs():
        if (folder / f"{model}{ONNX_SUFFIX}").is_file():
            return folder / f"{model}{ONNX_SUFFIX}", folder / f"{model}.safetensors"
    raise OnnxEngineError(f"model '{model}' ships no ONNX export: {export_hint(model)}")


def stale_export(info: OnnxModelInfo, onnx_path: Path, weights: Path | None) -> str | None:
    """Why ``onnx_path`` no longer matches the weights beside it (None while it does)."""
    if weights is None:
        return None
    if not weights.is_file():
        return f"{onnx_path}: the weights it was exported from ({weights.name}) are missing"
    if file_sha256(weights) != info.weights_sha256:
        return (f"{onnx_path} is stale: it was exported from other weights than {weights} (SHA-256 differs); "
                f"regenerate it with `recolor export {weights} --format onnx -o {onnx_path} --overwrite`")
    return None


def session_options(threads: int | None = None):
    """ONNX Runtime's options: ``threads`` (default: $OMP_NUM_THREADS as torch reads it, else ONNX
    Runtime's own choice, one per physical core) for the operators."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    options.intra_op_num_threads = max(0, threads or 0)
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations
    return options


@dataclass(frozen=True)
class HostDevice:
    """Where the ONNX engine runs: the CPU (``.type`` as a torch.device has it, for the batch pipeline)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


class OnnxColorizer(PhotoColorizer):
    """A model exported to ONNX, run by ONNX Runtime on the CPU: ``OnnxColorizer.load("effnet-unet")``
    (the shipped export), ``OnnxColorizer.load("model.onnx")`` or ``OnnxColorizer.load("run/model.safetensors")``
    (its export beside it). Usually made by ``Colorizer.load(..., engine="auto")``."""

    engine = "onnx"
    decodes_to_arrays = True
    device = HostDevice()
    precision = "fp32"

    def __init__(self, session: Any, info: OnnxModelInfo, path: Path, weights: Path | None = None, size: int | None = None,
                 chroma: float = 1.0) -> None:
        if not 0.0 <= chroma <= 2.0:
            raise ValueError(f"chroma {chroma}: must be between 0 (grey) and 2")
        self.session, self.info, self.path, self.chroma = session, info, path, chroma
        self.source = weights or path  # the weights file, as Colorizer.source; the ONNX file alone when given alone
        self.config = info.config
        if size is not None and not info.dynamic_size and size != info.image_size:
            raise ValueError(f"--size {size}: {path} was exported for {info.image_size} pixels only (use --engine torch)")
        self.size = square_size(info.image_size, info.multiple, size)

    @classmethod
    def load(cls, model: str | Path, size: int | None = None, chroma: float = 1.0, threads: int | None = None) -> "OnnxColorizer":
        """The model's ONNX export; OnnxEngineError (one line) when there is none or it is stale."""
        import onnxruntime

        path, weights = find_onnx(model)
        try:
            session = onnxruntime.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise OnnxEngineError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        info = OnnxModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, path)
        problem = stale_export(info, path, weights)
        if problem:
            raise OnnxEngineError(problem)
        return cls(session, info, path, weights, size=size, chroma=chroma)

    @property
    def name(self) -> str:
        return self.info.model

    @property
    def weights_sha256(self) -> str:
        return self.info.weights_sha256

    @property
    def label(self) -> str:
        """The model's name for its shipped weights, else the weights file's path (as Colorizer.label)."""
        from .shipped import weights_dirs

        shipped = any(self.source.resolve().parent == folder.resolve() for folder in weights_dirs())
        return self.name if shipped else str(self.source)

    def torch_engine(self):
        """The same weights on the torch engine (loaded on first use), for what an export cannot
        answer; ValueError for an ONNX file given without its weights."""
        if getattr(self, "_torch_engine", None) is None:
            if self.source.suffix == ONNX_SUFFIX:
                raise ValueError(f"{self.path} alone cannot answer this: it needs the model's weights and engine='torch'")
            from .inference import Colorizer

            self._torch_engine = Colorizer.load(self.source, engine="torch", precision="fp32", size=self.size, chroma=self.chroma)
        return self._torch_engine

    def suggest(self, photo, x: float, y: float, k: int = 5, hints: Sequence | None = None, reference=None) -> list[tuple[str, float]]:
        """:meth:`recolor.inference.Colorizer.suggest`, on the torch engine: it reads the network's
        distribution over ab bins, which the export does not output."""
        return self.torch_engine().suggest(photo, x, y, k=k, hints=hints, reference=reference)

    @property
    def takes_hints(self) -> bool:
        return self.info.global_hint_length > 0

    def hint_inputs(self, hints: Sequence, photo_sizes: Sequence[tuple[int, int]], network_input: np.ndarray) -> tuple[np.ndarray, ...]:
        """The network's hint inputs for a batch, made by the torch engine's code (the one
        definition of them; torch is imported only here, for a batch with hints); () without hints."""
        if not any(hints):
            return ()
        from .inference import Colorizer

        # Colorizer.hint_inputs reads only size, name, takes_hints, check_hints and reference_hint
        return tuple(np.asarray(tensor, dtype=np.float32) for tensor in Colorizer.hint_inputs(self, hints, photo_sizes, network_input))

    @staticmethod
    def reference_hint(reference):
        from .inference import Colorizer

        return Colorizer.reference_hint(reference)

    def predict_ab(self, lightness_small: np.ndarray, hint_inputs: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """Normalised ab (B, 2, h, w) for normalised L (B, 1, s, s), as :meth:`Colorizer.predict_ab`;
        a hint-taking network without hints gets zeros (no hints)."""
        batch = lightness_small.shape[0]
        feeds = {LIGHTNESS_INPUT: np.ascontiguousarray(lightness_small, dtype=np.float32)}
        if self.takes_hints:
            local, global_ = hint_inputs or (np.zeros((batch, 3, *lightness_small.shape[-2:]), np.float32),
                                             np.zeros((batch, self.info.global_hint_length), np.float32))
            feeds[LOCAL_HINTS_INPUT], feeds[GLOBAL_HINTS_INPUT] = np.asarray(local, np.float32), np.asarray(global_, np.float32)
        ab = self.session.run([AB_OUTPUT], feeds)[0]
        if not np.isfinite(ab).all():
            raise NonFiniteOutputError("the model produced NaN or infinite colour (corrupt weights or numeric overflow)")
        return np.clip(ab * np.float32(self.chroma), -1.0, 1.0)

    @staticmethod
    def photo_lightness(photo) -> np.ndarray:
        """The photo's full-size CIE L (H, W) float32 (numpy or torch CPU pixels)."""
        pixels = np.asarray(photo.pixels)
        return lightness_from_pixels(pixels) if pixels.dtype == np.uint8 else pixels[..., 0].astype(np.float32)

    def input_from_lightness(self, lightness: np.ndarray) -> np.ndarray:
        return network_input(lightness, self.size)

    def colorize_photos(self, photos: Sequence, hints: Sequence | None = None) -> tuple[list[np.ndarray], None]:
        """RGB (H, W, 3) arrays, uint8 (uint16 for 16-bit photos), as :meth:`Colorizer.colorize_photos`."""
        if not photos:
            return [], None
        lightness = [self.photo_lightness(photo) for photo in photos]
        small = np.stack([self.input_from_lightness(plane) for plane in lightness])
        extra = self.hint_inputs(hints or [None] * len(photos), [(plane.shape[1], plane.shape[0]) for plane in lightness], small)
        ab_small = self.predict_ab(small, extra)
        outputs = []
        for index, field_small in enumerate(ab_small):
            depth = np.uint8 if np.asarray(photos[index].pixels).dtype == np.uint8 else np.uint16
            outputs.append(join_levels(lightness[index], field_small, depth))
            lightness[index] = None  # the full-size plane can go as soon as it is joined
        return outputs, None
