"""`recolor evaluate` end to end on a tiny photo folder, with tiny random networks (nothing downloads)."""
from __future__ import annotations

import json
import shutil
import urllib.error
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.checkpoint import save_checkpoint
from recolor.classifiers import CifarResNet
from recolor.cli import app
from recolor.color import rgb_to_lab_normalized, rgb_to_lightness
from recolor.evaluate import EvalSettings, EvaluationError, bar_chart, evaluate, find_photos, parse_metric_options, square_crop
from recolor.imageio import open_image
from recolor.registry import get_model_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised 32 px pix2pix U-Net saved as a recolor checkpoint."""
    spec = get_model_spec("pix2pix")
    config = spec.config({"image_size": 32, "ngf": 8, "num_downs": 5})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_pix2pix.safetensors"
    save_checkpoint(path, spec.build(config).state_dict(), "pix2pix", config)
    return path


@pytest.fixture(scope="module")
def resnet20_file(tmp_path_factory) -> Path:
    """A random CIFAR ResNet-20 in the layout of the shared checkpoints (module. prefix, state_dict key)."""
    torch.manual_seed(1)
    network = CifarResNet(20)
    state = {f"module.{k}": v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("clf") / "resnet20.th"
    torch.save({"state_dict": state, "best_prec1": 0.0}, path)
    return path


@pytest.fixture(scope="module")
def perfect_predictions(tiny_photo_folder, tmp_path_factory) -> Path:
    """The ground truth itself as a predictions folder, saved as .bmp (matched to the .png by stem)."""
    root = tmp_path_factory.mktemp("perfect")
    for path in tiny_photo_folder.rglob("*.png"):
        target = root / path.relative_to(tiny_photo_folder).with_suffix(".bmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).save(target)
    return root


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def _message(result) -> str:
    return " ".join(result.output.split())


def test_cli_evaluate_all_metrics_json_and_report(tiny_photo_folder, tiny_checkpoint, resnet20_file, perfect_predictions, tmp_path):
    report = tmp_path / "report"
    clf = f"resnet20-cifar10:{resnet20_file}"
    result = runner.invoke(app, [
        "evaluate", "--data", str(tiny_photo_folder), "--model", str(tiny_checkpoint), "--predictions", f"perfect={perfect_predictions}",
        "--metric", "all", "--classifier", clf, "--backbone", clf, "--size", "32", "--limit", "10",
        "--omega-steps", "2", "--omega-images", "8", "--is-splits", "2", "--report-samples", "3",
        "--json", "--report", str(report), "--quiet", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    assert "CIM" in result.stderr and "Omega" in result.stderr  # the table; stdout holds the JSON alone
    data = json.loads(result.stdout)
    rows = {row["name"]: row["values"] for row in data["rows"]}
    assert list(rows) == ["real", "grey", "tiny_pix2pix", "perfect"]
    assert data["info"]["photos"] == 10 and data["info"]["size"] == 32
    real, grey, model, perfect = rows["real"], rows["grey"], rows["tiny_pix2pix"], rows["perfect"]
    # no diversity: nothing here samples, and "all" drops what does not apply instead of failing
    assert "error_of_best" not in data["metrics"] and set(data["metrics"]) >= {"ab_l1", "weighted_error", "cim", "omega", "is", "fid"}
    # the ground truth scored as a prediction is perfect on every metric, and equals the real row where that is defined
    assert perfect["ab_l1"] == 0 and perfect["ab_l1_grid"] == 0 and perfect["weighted_error"] == 0
    assert perfect["psnr"] is None  # +inf is written as null
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["colourfulness_rel"] == pytest.approx(1.0)
    assert perfect["accuracy"] == real["accuracy"] and perfect["cim"] == pytest.approx(real["cim"])
    assert perfect["omega"] == 0.0  # same images, same seed -> the same fine-tuned weights
    assert perfect["fid"] == pytest.approx(0.0, abs=1e-6) and perfect["is"] == pytest.approx(real["is"])
    # labels: the folders are not CIFAR classes, so the classifier's prediction on the original is the label
    assert real["accuracy"] == 1.0 and "prediction" in data["info"]["labels"]
    assert any("prediction on its colour original" in note for note in data["notes"])
    assert any("NOT comparable" in note for note in data["notes"])
    # baselines behave as references: grey has no colour, errors > 0, the ground truth has no error figures
    assert grey["colourfulness"] < 1.0 and real["colourfulness_rel"] == 1.0
    assert grey["ab_l1"] > 0.01 and grey["weighted_error"] > grey["ab_l1"] and grey["omega"] > 0
    assert real["ab_l1"] is None and real["fid"] is None and real["omega"] is None
    assert model["ab_l1"] > 0 and 0 <= model["cim"] <= 1
    # the report: a self-contained page whose images all exist, relative to it
    page = (report / "index.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) >= 3 * 5 + 5  # 3 photos x (grey, model, perfect, real) + charts
    for source in parser.sources:
        assert not source.startswith(("/", "http")) and (report / source).is_file(), source
    assert (report / "charts" / "cim.png").is_file() and json.loads((report / "results.json").read_text())["rows"]
    with Image.open(report / "samples" / "000_real.png") as sample:
        assert sample.size == (32, 32)


def test_grey_baseline_matches_an_independent_computation(tiny_photo_folder, tiny_checkpoint):
    result = evaluate(EvalSettings(data=tiny_photo_folder, models=[str(tiny_checkpoint)], metrics=["ab-l1", "colourfulness"],
                                   size=24, limit=6, device="cpu", report_samples=2))
    photos = find_photos(tiny_photo_folder, 6, 0)
    truth = torch.stack([torch.from_numpy(square_crop(open_image(p.path), 24)) for p in photos]).float() / 255
    true_ab = rgb_to_lab_normalized(truth)[1]
    # grey output has a = b = 0 up to 8-bit rounding, so its error is the mean |ab| of the photos
    assert result.row("grey").values["ab_l1"] == pytest.approx(true_ab.abs().mean().item(), abs=2e-3)
    assert result.metrics == ["ab_l1", "ab_l1_grid", "ab_l1_vs_grey", "colourfulness", "colourfulness_rel"]
    # the lead over grey is the paired per-photo difference, with its standard error
    model, grey = result.row("tiny_pix2pix").values, result.row("grey").values
    assert model["ab_l1_vs_grey"] == pytest.approx(model["ab_l1"] - grey["ab_l1"], abs=1e-12)
    assert model["ab_l1_vs_grey_se"] > 0 and grey["ab_l1_vs_grey"] is None
    assert len(result.samples) == 2 and result.samples[0]["images"]["real"].shape == (24, 24, 3)


def test_missing_requirements_exit_2_with_what_to_pass(tiny_photo_folder, tiny_checkpoint, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    monkeypatch.setattr("recolor.checkpoint.weights_dirs", lambda: [])  # a checkout without shipped weights
    base = ["evaluate", "--data", str(tiny_photo_folder), "--model", str(tiny_checkpoint), "--size", "32", "--limit", "2", "-q"]
    cases = [
        (["evaluate", "--model", str(tiny_checkpoint)], "pass --data DIR"),
        (["evaluate", "--data", str(tiny_photo_folder)], "nothing to evaluate: no shipped weights found; pass --model"),
        (base + ["--metric", "cim", "--classifier", "resnet18"], "--classifier resnet18:PATH"),
        (base + ["--metric", "cim", "--classifier", "resnet18"], "--classifier efficientnet-lite2 (installed with recolor)"),
        (base + ["--metric", "fid", "--backbone", "inception_v3"], "--backbone efficientnet-lite2 (installed with recolor)"),
        (base + ["--metric", "cim", "--classifier", "resnet56-cifar10"], "needs its weights file"),
        (base + ["--metric", "sharpness"], "unknown metric 'sharpness'"),
        (base + ["--metric", "diversity"], "needs a model that draws several colorizations"),
        (["evaluate", "--data", str(tiny_photo_folder), "--model", "/no/such.safetensors"], "no such checkpoint"),
        (["evaluate", "--data", str(tiny_photo_folder), "--predictions", "/no/such/dir"], "no such folder"),
        (base + ["--size", "8", "--metric", "ssim"], "SSIM needs photos of at least 11x11"),
    ]
    for arguments, expected in cases:
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert expected in _message(result), (arguments, result.output)
        assert "Traceback" not in result.output


def _tiny_cvae(folder: Path) -> Path:
    spec = get_model_spec("cvae-l2")
    config = spec.config({"latent_dim": 8, "cond_channels": [4, 4, 4], "zmap_channels": 4, "decoder_channels": [4, 4, 4, 4, 4], "encoder_channels": [4, 4, 4]})
    torch.manual_seed(0)
    path = folder / "tiny_cvae.safetensors"
    save_checkpoint(path, spec.build(config).state_dict(), "cvae-l2", config)
    return path


def test_diversity_with_a_sampling_model(tiny_photo_folder, tmp_path):
    path = _tiny_cvae(tmp_path)
    result = evaluate(EvalSettings(data=tiny_photo_folder, models=[str(path)], metrics=["diversity", "ab-l1"], size=32, limit=3,
                                   samples=3, sample_method="random", device="cpu", report_samples=0))
    values = result.row("cvae-l2 (tiny_cvae)").values
    assert values["variance"] > 0 and 0 < values["error_of_best"] < 1
    assert values["best_vs_single"] == pytest.approx(values["error_of_best"] / values["ab_l1"], rel=1e-6)
    assert 0 <= values["local_share"] <= 2
    assert "sample_accuracy" not in result.metrics  # no classifier: no judge on the samples
    assert result.row("grey").values["error_of_best"] is None
    assert any("3 colorizations per photo" in note for note in result.notes)


def test_diversity_figures_do_not_depend_on_the_batch_size(tiny_photo_folder, tmp_path):
    """Issue 29, item 16: each photo's draws are seeded by its place in the run, not by its batch's."""
    path = _tiny_cvae(tmp_path)
    figures = []
    for batch_size in (1, 3):
        result = evaluate(EvalSettings(data=tiny_photo_folder, models=[str(path)], metrics=["diversity"], size=32, limit=3, samples=3,
                                       sample_method="random", device="cpu", report_samples=0, batch_size=batch_size))
        figures.append(result.row("cvae-l2 (tiny_cvae)").values)
    assert figures[0] == figures[1]


def test_the_judge_scores_every_sample_when_it_scores_the_single_colorizations(tiny_photo_folder, resnet20_file, tmp_path):
    spec = get_model_spec("effnet-unet")
    config = spec.config({"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64})
    torch.manual_seed(0)
    path = tmp_path / "tiny_effnet.safetensors"
    save_checkpoint(path, spec.build(config).state_dict(), "effnet-unet", config)
    result = evaluate(EvalSettings(data=tiny_photo_folder, models=[str(path)], metrics=["diversity", "accuracy"], size=32, limit=4,
                                   samples=3, classifier=f"resnet20-cifar10:{resnet20_file}", device="cpu", report_samples=0))
    values = result.row("effnet-unet (tiny_effnet)").values
    assert "sample_accuracy" in result.metrics and 0 <= values["sample_accuracy"] <= 1
    assert values["sample_accuracy"] * 12 == pytest.approx(round(values["sample_accuracy"] * 12))  # 4 photos x 3 samples
    assert result.row("real").values.get("sample_accuracy") is None


def test_parse_metric_options_and_bar_chart():
    assert parse_metric_options(["cim", "ab_l1"]) == ["ab-l1", "cim"]
    assert parse_metric_options(["all"])[-1] == "fid" and parse_metric_options(None) is None
    assert parse_metric_options(["colorfulness,psnr"]) == ["psnr", "colourfulness"]
    with pytest.raises(EvaluationError):
        parse_metric_options(["nope"])
    chart = bar_chart("CIM", ["real", "grey", "model"], [0.7, None, 0.5], ["baseline", "baseline", "model"])
    assert chart.size[0] == 720 and chart.size[1] > 3 * 20
    pixels = chart.load()
    # the model's bar is drawn in the model colour somewhere on its row
    assert any(pixels[x, 50 + 2 * 26 + 12] == (52, 101, 164) for x in range(200, 600))


def test_predictions_folder_missing_files_are_left_out_for_every_row(tiny_photo_folder, perfect_predictions, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(perfect_predictions, partial)
    removed = sorted(partial.rglob("*.bmp"))[:20]
    for path in removed:
        path.unlink()
    result = evaluate(EvalSettings(data=tiny_photo_folder, predictions=[str(partial)], metrics=["psnr"], size=16, device="cpu", report_samples=0))
    assert result.info["photos"] == 24 - 20
    assert any("no file in a predictions folder" in note for note in result.notes)


# --- the accumulators, apart from a run ---------------------------------------------------------

def test_every_metric_option_makes_accumulators_for_its_keys_in_table_order(tmp_path):
    from recolor.evaluation.accumulators import ACCUMULATORS, GroundTruth, Setup
    from recolor.evaluation.catalogue import METRIC_OPTIONS, METRICS

    assert list(ACCUMULATORS) == METRIC_OPTIONS
    # a judge present: the diversity figures then include its accuracy on the samples
    setup = Setup(EvalSettings(data=tmp_path), ["real", "grey", "model"], GroundTruth(), classifier=object())
    for option, make in ACCUMULATORS.items():
        assert [accumulator.key for accumulator in make(setup)] == [key for key, info in METRICS.items() if info.option == option], option


def test_pixel_accumulators_match_the_metric_functions_over_two_batches():
    from recolor import metrics as M
    from recolor.evaluation.accumulators import GroundTruth, ScoredBatch, Setup, make_accumulators, row_values

    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(5, 3, 16, 16, generator=generator)
    model = (truth + 0.1 * torch.randn(5, 3, 16, 16, generator=generator)).clamp(0, 1)
    to_u8 = lambda rgb: (rgb * 255).round().to(torch.uint8)  # noqa: E731
    truth_u8, model_u8, grey_u8 = to_u8(truth), to_u8(model), to_u8(truth.mean(dim=1, keepdim=True).expand(5, 3, 16, 16))
    ground_truth = GroundTruth()
    setup = Setup(EvalSettings(data=Path("unused")), ["real", "grey", "model"], ground_truth)
    accumulators = make_accumulators(["ab-l1", "weighted", "psnr", "colourfulness"], setup)
    for part in (slice(0, 2), slice(2, 5)):  # two batches
        t = truth_u8[part].float() / 255
        batch = ScoredBatch(t, rgb_to_lightness(t), {"real": truth_u8[part], "grey": grey_u8[part], "model": model_u8[part]})
        ground_truth.add(batch)
        for accumulator in accumulators:
            accumulator.update(batch)
    values = {row: row_values(row, accumulators) for row in ("real", "grey", "model")}
    true_ab = rgb_to_lab_normalized(truth_u8.float() / 255)[1]
    model_ab, grey_ab = (rgb_to_lab_normalized(rgb.float() / 255)[1] for rgb in (model_u8, grey_u8))
    assert values["model"]["ab_l1"] == pytest.approx(M.ab_l1(model_ab, true_ab).double().mean().item())
    assert values["model"]["psnr"] == pytest.approx(M.psnr(model_u8.float() / 255, truth_u8.float() / 255).mean().item())
    weights = M.inverse_frequency_weights(M.ab_histogram(true_ab))
    assert values["model"]["weighted_error"] == pytest.approx(M.weighted_ab_error(model_ab, true_ab, weights).mean().item())
    difference = M.ab_l1(model_ab, true_ab).double() - M.ab_l1(grey_ab, true_ab).double()
    assert values["model"]["ab_l1_vs_grey"] == pytest.approx(difference.mean().item())
    assert values["model"]["ab_l1_vs_grey_se"] == pytest.approx((difference.std() / 5**0.5).item())
    # the ground truth keeps only the figures that are not trivial against itself
    assert values["real"]["ab_l1"] is None and values["real"]["weighted_error"] is None and values["real"]["colourfulness_rel"] == 1.0
    assert "ab_l1_vs_grey_se" not in values["real"] and values["grey"]["ab_l1_vs_grey"] is None
