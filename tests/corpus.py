"""Bad and odd inputs made on the fly in a temporary folder (issue 13's reliability probes).

Every builder writes into the path it is given and returns it, so a test reads as a list of
the files it throws at recolor.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms
from safetensors.torch import save as save_safetensors


def grey_photo(path: Path, photo: np.ndarray, size: tuple[int, int] = (64, 48)) -> Path:
    """A small greyscale photo in the format of ``path``'s extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).convert("L").resize(size).save(path)
    return path


def corrupt_file(path: Path) -> Path:
    """A file named like an image that is not one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return path


def named_pipe(path: Path) -> Path:
    """A FIFO: opening it for reading blocks until a writer comes, which none ever does."""
    os.mkfifo(path)
    return path


def symlink_loop(path: Path) -> Path:
    """``ln -s NAME NAME``: any stat of it fails with ELOOP."""
    os.symlink(path.name, path)
    return path


def folder_loop(folder: Path, name: str = "up") -> Path:
    """``folder/name -> ..``: a link back to the folder's parent."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / name
    os.symlink("..", link)
    return link


def float_tiff_with_nan(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A 32-bit float TIFF, a grey ramp from 0.2 to 0.8 with one NaN pixel."""
    width, height = size
    ramp = np.tile(np.linspace(0.2, 0.8, width, dtype=np.float32), (height, 1))
    ramp[3, 5] = np.nan
    Image.fromarray(ramp, mode="F").save(path)
    return path


def grey_jpeg_with_lab_profile(path: Path, photo: np.ndarray) -> Path:
    """A greyscale JPEG carrying a non-RGB (Lab) ICC profile."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(photo).convert("L").resize((64, 48)).save(path, icc_profile=profile)
    return path


def jpeg_with_bad_exif(path: Path) -> Path:
    """A JPEG whose EXIF block points past its end: Pillow warns while reading it."""
    entries = struct.pack(">HHII", 0x010E, 2, 100, 0x1000) + struct.pack(">HHI", 0x0112, 3, 1) + b"\x00\x01\x00\x00"
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 2) + entries + b"\x00\x00\x00\x00"
    Image.new("L", (32, 24), 128).save(path, exif=exif)
    return path


def eps_file(path: Path) -> Path:
    """An EPS image: Pillow needs Ghostscript to read it."""
    Image.new("L", (16, 16), 100).save(path, format="EPS")
    return path


def animated_gif(path: Path, frames: int = 3) -> Path:
    images = [Image.new("L", (24, 16), 40 + 60 * i) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100)
    return path


def transparent_gif(path: Path) -> Path:
    """A GIF whose top half is transparent."""
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[8:, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(path)
    return path


def crafted_checkpoint(path: Path, model: str, config: dict, tensors: dict[str, torch.Tensor] | None = None,
                       kind: str = "weights") -> Path:
    """A safetensors file with recolor metadata written by hand (no checksum, any config, any tensors)."""
    import json

    metadata = {"recolor.model": model, "recolor.config": json.dumps(config), "recolor.format": "1", "recolor.kind": kind, "recolor.extra": "{}"}
    path.write_bytes(save_safetensors(tensors or {"dummy": torch.zeros(1)}, metadata=metadata))
    return path


def sparse_checkpoint(path: Path, model: str, config: dict, tensors: dict[str, torch.Tensor], kind: str = "weights") -> Path:
    """A safetensors file whose header declares ``tensors`` (shapes and dtypes only: meta tensors do)
    and whose data is a hole: gigabytes declared, nothing written (a sparse file, 0 bytes on disk)."""
    import json
    import math

    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header: dict = {"__metadata__": {"recolor.model": model, "recolor.config": json.dumps(config), "recolor.format": "1",
                                     "recolor.kind": kind, "recolor.extra": "{}"}}
    offset = 0
    for key in sorted(tensors):
        size = math.prod(tensors[key].shape) * tensors[key].element_size()
        header[key] = {"dtype": names[tensors[key].dtype], "shape": list(tensors[key].shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def meta_generator_state(model: str, config: dict, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The generator's tensors of a config, on the meta device (shapes and dtypes, no memory), floats as ``dtype``."""
    from recolor.registry import get_model_spec

    spec = get_model_spec(model)
    with torch.device("meta"):
        state = spec.build(spec.architecture_config(config)).state_dict()
    return {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}


def overwrite_tensor_bytes(path: Path, count: int = 64) -> Path:
    """Bytes in the middle of a safetensors file's data section set to 0x7f: weights corrupted, header intact."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    middle = header + (len(data) - header) // 2
    data[middle : middle + count] = b"\x7f" * count
    path.write_bytes(bytes(data))
    return path


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stale_temp_file(folder: Path, name: str, pid: int) -> Path:
    """What a write killed by SIGKILL leaves behind: recolor's hidden temporary file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.recolor-{pid}-abc12345.tmp"  # mkstemp's 8 random characters
    path.write_bytes(b"x" * 100)
    return path



def foreign_temp_file(folder: Path, name: str = ".notes.abcdefgh.tmp", age_s: float = 7200) -> Path:
    """Someone else's hidden temporary file, shaped like mkstemp's names and hours old."""
    import time

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"a user's unsaved notes")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def noise_photo(path: Path, size: tuple[int, int] = (256, 256), seed: int = 0) -> Path:
    """A grey photo of random noise: its colorization compresses to nothing, so the output is big."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def grey_ramp(size: tuple[int, int] = (64, 32)) -> np.ndarray:
    """8-bit grey levels 20..235, rising from left to right (H, W) uint8: the reference of the TIFFs below."""
    width, height = size
    return np.tile(np.linspace(20, 235, width), (height, 1)).round().astype(np.uint8)


def tiff_of_samples(path: Path, samples: np.ndarray, **options) -> Path:
    """A one-channel TIFF holding ``samples`` as they are (float32, int32, uint32...), written by tifffile."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, samples, photometric="minisblack", **options)
    return path


def bilevel_tiff(path: Path, compression: str = "group4", size: tuple[int, int] = (64, 32)) -> Path:
    """A black-and-white fax-style TIFF (CCITT Group 3 or 4): Pillow reads it as mode '1'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey_ramp(size) > 127).save(path, compression=compression)
    return path


def premultiplied_alpha_tiff(path: Path, alpha: int = 128) -> Path:
    """A grey TIFF with associated (premultiplied) alpha: Pillow reads it as mode 'La'."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = grey_ramp()
    premultiplied = (ramp.astype(np.uint16) * alpha // 255).astype(np.uint8)
    tifffile.imwrite(path, np.dstack([premultiplied, np.full_like(ramp, alpha)]), photometric="minisblack",
                     extrasamples=["assocalpha"], planarconfig="contig")
    return path


# --- issue 29: names and files the command line must not lose or print raw ---------------------

def multi_page_tiff(path: Path, pages: int = 3) -> Path:
    """A greyscale TIFF of ``pages`` pages, each a different grey."""
    images = [Image.new("L", (24, 16), 40 + 60 * i) for i in range(pages)]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def name_with_terminal_escape(folder: Path, suffix: str = ".jpg") -> Path:
    """A corrupt image whose name holds ESC sequences: "clear the screen" and "erase the line"."""
    return corrupt_file(folder / f"bad\x1b[2J\x1b[1K\r\u202ename{suffix}")


def long_named_photo(folder: Path, photo: np.ndarray, name_bytes: int = 250) -> Path:
    """A greyscale JPEG whose name is ``name_bytes`` bytes long (with a two-byte character at the
    edge where a temporary name built on it would be cut)."""
    stem = "é" + "x" * (name_bytes - len(".jpg") - 2)
    return grey_photo(folder / f"{stem}.jpg", photo)


def model_file_with_an_unfit_size(path: Path, image_size: int = 40) -> Path:
    """A consistent tiny pix2pix file (its tensors fit) whose config's image_size the network cannot
    train at (5 downsamplings need a multiple of 32)."""
    from recolor.registry import get_model_spec

    spec = get_model_spec("pix2pix")
    config = {"ngf": 8, "num_downs": 5, "image_size": image_size}
    return crafted_checkpoint(path, "pix2pix", config, spec.build(spec.architecture_config(config)).state_dict())
