"""The judges of the classifier-based metrics: the classifier (accuracy, CIM, Omega) and the
backbone (IS, FID), and the class label of every photo."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .catalogue import BACKBONE_OPTIONS, CLASSIFIER_OPTIONS, named_options
from .photos import Photo
from .settings import EvalSettings, EvaluationError

IMAGENET_CLASSES_FILE = "imagenet1k-classes.tsv"  # "index<TAB>wnid<TAB>name" lines, as in shared/data/photos-extra
WNID_PREFIX = re.compile(r"^(n\d{8})(?:_|$)")


def imagenet_labels_from_names(photos: list[Photo], root: Path) -> list[int] | None:
    """ImageNet-1k labels of photos named ``WNID_anything`` (e.g. ``n01440764_tench.jpg``), from an
    ``imagenet1k-classes.tsv`` in the data folder or beside it; None unless every photo has one."""
    table = next((folder / IMAGENET_CLASSES_FILE for folder in (root, root.parent) if (folder / IMAGENET_CLASSES_FILE).is_file()), None)
    if table is None:
        return None
    index_of = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip().isdigit():
            index_of[fields[1].strip()] = int(fields[0])
    labels = []
    for photo in photos:
        match = WNID_PREFIX.match(photo.path.stem)
        if match is None or match.group(1) not in index_of:
            return None
        labels.append(index_of[match.group(1)])
    return labels


@dataclass
class Labels:
    """Where the photos' class labels come from: fixed labels per photo position, or (``by_position``
    None) the classifier's own prediction on each colour original."""

    source: str | None = None
    by_position: list[int] | None = None

    def for_batch(self, classifier, positions: list[int], truth: torch.Tensor) -> torch.Tensor:
        if self.by_position is not None:
            return torch.tensor([self.by_position[position] for position in positions])
        return classifier.probabilities(truth).argmax(dim=-1)


def choose_labels(classifier, photos: list[Photo], data: Path, notes: list[str]) -> Labels:
    """Sub-folder names when they name the classifier's classes, ImageNet WNIDs in the file names,
    sorted sub-folders for a fine-tuned classifier, else its own prediction on the original (noted)."""
    indices = [classifier.class_index(p.folder) if p.folder else None for p in photos]
    wnid_labels = imagenet_labels_from_names(photos, data) if classifier.num_classes == 1000 else None
    if all(i is not None for i in indices):
        return Labels("sub-folder names", indices)
    if wnid_labels is not None:
        return Labels(f"ImageNet WNIDs of the file names ({IMAGENET_CLASSES_FILE})", wnid_labels)
    if classifier.class_names is None:
        folders = sorted({p.folder for p in photos if p.folder})
        if len(folders) == classifier.num_classes and all(p.folder for p in photos):
            return Labels("sub-folder names in sorted order (the ImageFolder convention of a fine-tuned classifier)",
                          [folders.index(p.folder) for p in photos])
    notes.append(f"Labels: the photos' sub-folders do not name {classifier.name}'s classes, so each photo's label is "
                 f"{classifier.name}'s prediction on its colour original (accuracy of 'real' is 1 by construction).")
    return Labels("the classifier's own prediction on the colour original")


def _load_network(spec: str, role: str, device: torch.device, hint: str, option: str):
    from ..classifiers import ClassifierError, load_classifier

    try:
        return load_classifier(spec, device=device, option=option)
    except ClassifierError as exc:
        raise EvaluationError(f"{role}: {exc.args[0]}{hint}") from None


def _load_or_skip(load: Callable[[], Any], group: set[str], given: bool, named: set[str], options: list[str], notes: list[str]):
    """The network that ``group``'s metrics need, or None with those metrics dropped from ``options``
    and a note saying why: when they came only through ``--metric all`` and no network was
    passed, an offline machine still gets every metric it can compute. Asked for by name or
    with a network given, a failure stays an error."""
    try:
        return load()
    except EvaluationError as exc:
        if given or group & named:
            raise
        skipped = [option for option in options if option in group]
        options[:] = [option for option in options if option not in group]
        notes.append(f"skipped {', '.join(skipped)}: {exc}")
        return None


# The judges when none is passed: installed with recolor (PyPI), so every metric works offline; the
# download-backed torchvision ones (resnet18, inception_v3) are opt-in. Lite2 is not the lite0
# encoder of the default model, which must not score by pleasing its own features.
DEFAULT_JUDGE = "efficientnet-lite2"


def load_judges(settings: EvalSettings, options: list[str], device: torch.device, notes: list[str]) -> tuple[Any, Any]:
    """(classifier, backbone) for the options that need them (None where none is needed or, through
    ``--metric all`` only, none could be loaded: then ``options`` loses those metrics)."""
    classifier = backbone = None
    named = named_options(settings.metrics)
    if CLASSIFIER_OPTIONS & set(options):
        spec = settings.classifier or DEFAULT_JUDGE
        hint = "" if settings.classifier else " (or pass --classifier resnet56-cifar10:PATH for CIFAR-10 photos)"
        classifier = _load_or_skip(lambda: _load_network(spec, "accuracy/CIM/Omega need a classifier", device, hint, "--classifier"),
                                   CLASSIFIER_OPTIONS, bool(settings.classifier), named, options, notes)
    if BACKBONE_OPTIONS & set(options) and classifier is not None and (settings.backbone or DEFAULT_JUDGE) == (settings.classifier or DEFAULT_JUDGE):
        backbone = classifier  # one network for both: its forward pass serves accuracy/CIM and IS/FID alike
    elif BACKBONE_OPTIONS & set(options):
        spec = settings.backbone or DEFAULT_JUDGE
        hint = "" if settings.backbone else "; any classifier also works offline, e.g. --backbone resnet56-cifar10:PATH (not comparable with published IS/FID)"
        backbone = _load_or_skip(lambda: _load_network(spec, "IS/FID need a backbone", device, hint, "--backbone"),
                                 BACKBONE_OPTIONS, bool(settings.backbone), named, options, notes)
    return classifier, backbone
