"""recolor.metrics and recolor.classifiers: every metric against a hand computation on tiny inputs."""
from __future__ import annotations

import io
import math
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from recolor import metrics as M
from recolor.classifiers import (CIFAR10_CLASSES, CifarResNet, ClassifierError, finetune, load_classifier, read_state_dict)


def _ab(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# --- ab errors ---------------------------------------------------------------------------------

def test_ab_l1_is_mean_absolute_difference_over_channels_and_pixels():
    true = _ab([[[[0.1, 0.2], [0.3, 0.4]], [[0.0, 0.0], [0.0, 0.0]]]])
    pred = _ab([[[[0.1, 0.0], [0.3, 0.0]], [[0.5, 0.0], [0.0, -0.1]]]])
    # |diffs| = 0, .2, 0, .4 | .5, 0, 0, .1 -> 1.2 / 8
    assert M.ab_l1(pred, true).item() == pytest.approx(0.15)


def test_centre_grid_positions():
    rows, cols = M.centre_grid(32, 32)
    assert rows.tolist() == [9, 11, 13, 15, 17, 19, 21, 23]  # cell centres of the central 16x16, cells of 2
    rows, cols = M.centre_grid(64, 48)
    assert rows.tolist() == [18, 22, 26, 30, 34, 38, 42, 46]
    assert cols.tolist() == [13, 16, 19, 22, 25, 28, 31, 34]  # floor(12 + (i + .5) * 3)


def test_ab_l1_grid_sees_only_grid_pixels():
    true = torch.zeros(1, 2, 32, 32)
    pred = torch.zeros(1, 2, 32, 32)
    rows, cols = M.centre_grid(32, 32)
    pred[:, :, rows[:, None], cols[None, :]] = 0.5  # error only on the 64 grid pixels
    assert M.ab_l1_grid(pred, true).item() == pytest.approx(0.5)
    assert M.ab_l1(pred, true).item() == pytest.approx(0.5 * 64 / 1024)
    pred2 = torch.full((1, 2, 32, 32), 0.3)
    pred2[:, :, rows[:, None], cols[None, :]] = 0.0  # error everywhere but the grid
    assert M.ab_l1_grid(pred2, true).item() == 0.0


# --- weighted error (paper 004) -------------------------------------------------------------------

def test_inverse_frequency_weights_and_weighted_error_by_hand():
    # 4 ground-truth pixels: three in one 10x10 Lab bin (a, b in [0, 10)), one in another (a in [20, 30))
    true = torch.zeros(1, 2, 1, 4)
    true[0, 0] = torch.tensor([5.0, 5.0, 5.0, 25.0]) / 110
    true[0, 1] = torch.tensor([5.0, 5.0, 5.0, 5.0]) / 110
    counts = M.ab_histogram(true)
    assert counts.sum() == 4 and sorted(counts[counts > 0].tolist()) == [1.0, 3.0]
    weights = M.inverse_frequency_weights(counts)
    bins = M.ab_bin_index(true)[0, 0]
    assert weights[bins[0]].item() == pytest.approx(4 / 3)  # 1 / (3/4)
    assert weights[bins[3]].item() == pytest.approx(4.0)  # 1 / (1/4)
    # errors per pixel (mean of |da|, |db|): 0.1, 0, 0.2, 0.3
    pred = true.clone()
    pred[0, 0, 0, 0] += 0.2
    pred[0, 0, 0, 2] += 0.2
    pred[0, 1, 0, 2] += 0.2
    pred[0, 1, 0, 3] -= 0.6
    expected = (4 / 3 * 0.1 + 0 + 4 / 3 * 0.2 + 4.0 * 0.3) / 4
    assert M.weighted_ab_error(pred, true, weights).item() == pytest.approx(expected)
    # the streaming form (sums per ground-truth bin) gives the same number
    sums = M.binned_ab_error(pred, true)
    assert M.weighted_error_from_bins(sums, 4, weights) == pytest.approx(expected)
    # with uniform weights it is the plain ab L1
    assert M.weighted_ab_error(pred, true, torch.ones(M.AB_BINS)).item() == pytest.approx(M.ab_l1(pred, true).item())


def test_weighted_error_streaming_equals_direct_over_batches():
    g = torch.Generator().manual_seed(1)
    true = torch.rand(6, 2, 8, 8, generator=g) * 0.6 - 0.3
    pred = true + 0.05 * torch.randn(6, 2, 8, 8, generator=g)
    weights = M.inverse_frequency_weights(M.ab_histogram(true[:3]) + M.ab_histogram(true[3:]))
    sums = M.binned_ab_error(pred[:3], true[:3]) + M.binned_ab_error(pred[3:], true[3:])
    direct = M.weighted_ab_error(pred, true, weights).mean().item()
    assert M.weighted_error_from_bins(sums, 6 * 64, weights) == pytest.approx(direct, rel=1e-9)
    # E[1/H] over the pixels is the number of occupied bins
    assert M.weighted_ab_error(true + 1 / 110, true, weights).mean().item() == pytest.approx(
        int((weights > 0).sum()) / 110, rel=1e-5)


# --- RGB fidelity ----------------------------------------------------------------------------------

def test_psnr_by_hand():
    true = torch.full((2, 3, 4, 4), 0.5)
    pred = true.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, 0] += 0.3  # one channel off by 0.3: MSE 0.09 / 3 = 0.03
    values = M.psnr(pred, true)
    assert values[0].item() == pytest.approx(20.0)
    assert values[1].item() == pytest.approx(10 * math.log10(1 / 0.03))
    assert math.isinf(M.psnr(true, true)[0].item())


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 20, 24, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(2, 3, 20, 24, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = M.ssim(a, b)
    for i in range(2):
        reference = structural_similarity(a[i].numpy(), b[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0)
        assert ours[i].item() == pytest.approx(reference, abs=1e-9)
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_colourfulness_by_hand():
    image = torch.zeros(1, 3, 1, 2)
    image[0, 0, 0, 0] = 1.0  # one pure red pixel (255, 0, 0), one black
    # rg = [255, 0], yb = [127.5, 0]: std = mean = (127.5, 63.75) -> M = 1.3 * hypot(127.5, 63.75)
    assert M.colourfulness(image).item() == pytest.approx(1.3 * math.hypot(127.5, 63.75))
    grey = torch.rand(1, 1, 5, 5).expand(1, 3, 5, 5)
    assert M.colourfulness(grey).item() == pytest.approx(0.0, abs=1e-9)
    flat = torch.tensor([0.2, 0.6, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    # uniform colour: no spread; rg = -102, yb = 76.5 -> 0.3 * hypot
    assert M.colourfulness(flat).item() == pytest.approx(0.3 * math.hypot(102, 76.5))


# --- diversity (paper 004, Table 3) ------------------------------------------------------------------

def test_error_of_best_and_variance_by_hand():
    true = torch.zeros(1, 2, 2, 2)
    samples = torch.stack([torch.full((2, 2, 2), v) for v in (0.3, -0.1, 0.2)])[None]  # (B=1, k=3, 2, 2, 2)
    assert M.error_of_best(samples, true).item() == pytest.approx(0.1)
    # per-pixel values {0.3, -0.1, 0.2}: mean 0.1333, population variance = mean of squares - square of mean
    expected = (0.09 + 0.01 + 0.04) / 3 - (0.4 / 3) ** 2
    assert M.per_pixel_variance(samples).item() == pytest.approx(expected)
    assert M.per_pixel_variance(samples[:, :1].expand(1, 3, 2, 2, 2)).item() == 0.0


# --- classifier-based (paper 003) --------------------------------------------------------------------

def test_accuracy_and_true_class_probability():
    probabilities = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    labels = torch.tensor([0, 0, 1])
    assert M.accuracy(probabilities, labels) == pytest.approx(1 / 3)
    assert M.accuracy(torch.tensor([0, 0, 1]), labels) == 1.0  # predicted indices work too
    assert M.true_class_probability(probabilities, labels).tolist() == pytest.approx([0.7, 0.4, 0.1])


def test_cim_on_three_images_by_hand():
    p_colour = torch.tensor([0.9, 0.8, 0.6])
    p_grey = torch.tensor([0.5, 0.8, 0.7])
    p_fake = torch.tensor([0.7, 0.1, 0.4])
    # w = |colour - grey| = 0.4, 0, 0.1; CIM = (0.4 * 0.7 + 0 * 0.1 + 0.1 * 0.4) / 0.5
    assert M.cim_weights(p_colour, p_grey).tolist() == pytest.approx([0.4, 0.0, 0.1])
    assert M.cim(p_colour, p_grey, p_fake) == pytest.approx(0.64)
    # the real images' own CIM and the grey images' CIM bracket a perfect and a no-colour recolouring
    assert M.cim(p_colour, p_grey, p_colour) == pytest.approx((0.4 * 0.9 + 0.1 * 0.6) / 0.5)
    assert M.cim(p_colour, p_grey, p_grey) == pytest.approx((0.4 * 0.5 + 0.1 * 0.7) / 0.5)
    assert math.isnan(M.cim(p_colour, p_colour, p_fake))  # no image needs colour


def test_omega_on_two_tiny_linear_models():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 2.0]]))
        a.bias.fill_(0.5)
        b.weight.zero_()
        b.bias.fill_(-0.5)
    assert M.omega(a, b) == pytest.approx(1 + 4 + 1)
    assert M.omega(a, a) == 0.0
    assert M.omega(dict(a.named_parameters()), dict(b.named_parameters())) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        M.omega(a, nn.Linear(3, 1))


# --- distribution metrics (paper 000) ------------------------------------------------------------

def test_inception_score_extremes():
    uniform = torch.full((20, 10), 0.1)
    assert M.inception_score(uniform)[0] == pytest.approx(1.0)
    assert M.inception_score(uniform, splits=4) == pytest.approx((1.0, 0.0))
    confident = torch.eye(4).repeat(5, 1)  # every image sure of its class, classes balanced
    assert M.inception_score(confident)[0] == pytest.approx(4.0)
    # half the images say class 0 for sure, half are unsure between 0 and 1: p(y) = (0.75, 0.25), by hand
    mixed = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    kl = [math.log(1 / 0.75), 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)]
    by_hand = math.exp(sum(kl) / 2)
    assert M.inception_score(mixed)[0] == pytest.approx(by_hand)
    # p(y) is each split's own marginal: a second split of two images sure of class 1 has p(y) = (0, 1)
    # and scores exactly 1 (against the pooled marginal of all four images it would score more)
    sure = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert M.inception_score(torch.cat((mixed, sure)), splits=2) == pytest.approx(((by_hand + 1) / 2, (by_hand - 1) / 2))


def test_fid_identical_sets_shift_and_scale():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(200, 6, generator=g, dtype=torch.float64)
    assert M.fid(features, features) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert M.fid(features, features + shift) == pytest.approx(5.0, abs=1e-6)  # ||mu_a - mu_b||^2
    # 1-d Gaussians N(0, 1) vs N(0, 4): 1 + 4 - 2 * sqrt(4) = 1
    one = torch.zeros(1, dtype=torch.float64)
    assert M.frechet_distance(one, torch.eye(1, dtype=torch.float64), one, 4 * torch.eye(1, dtype=torch.float64)) == pytest.approx(1.0)
    # streaming moments equal the direct covariance
    moments = M.FeatureMoments(6)
    moments.update(features[:50])
    moments.update(features[50:])
    assert torch.allclose(moments.covariance(), torch.from_numpy(np.cov(features.numpy(), rowvar=False)))


# --- classifiers -------------------------------------------------------------------------------------

def _save_cifar_checkpoint(path, network):
    # the shared files' layout: {"state_dict": {"module.<name>": tensor}, "best_prec1": float}, no num_batches_tracked
    state = {f"module.{k}": v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state, "best_prec1": 0.0}, path)


def test_cifar_resnet_architecture_and_module_prefix_roundtrip(tmp_path):
    torch.manual_seed(0)
    # He et al. 2016 Table 6: ResNet-20 has 0.27M parameters, ResNet-56 0.85M
    assert sum(p.numel() for p in CifarResNet(20).parameters()) == pytest.approx(0.27e6, rel=0.02)
    assert sum(p.numel() for p in CifarResNet(56).parameters()) == pytest.approx(0.85e6, rel=0.02)
    network = CifarResNet(20).eval()
    for module in network.modules():  # non-trivial batch-norm statistics, so a missed buffer would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet20.th"
    _save_cifar_checkpoint(path, network)
    assert all(not k.startswith("module.") for k in read_state_dict(path))
    classifier = load_classifier(f"resnet20-cifar10:{path}")
    assert classifier.class_names == list(CIFAR10_CLASSES) and classifier.input_size == 32 and classifier.feature_dim == 64
    x = torch.rand(3, 3, 32, 32)
    probabilities, features = classifier.outputs(x)
    with torch.no_grad():
        expected = network(classifier.normalise(x)).softmax(-1)
    assert torch.allclose(probabilities, expected, atol=1e-5)
    assert features.shape == (3, 64)
    assert classifier.class_index("Airplane") == 0 and classifier.class_index("truck") == 9 and classifier.class_index("ant") is None
    # the option-A shortcut: subsample by 2 and zero-pad channels (no parameters)
    block = network.layer2[0]
    out = block.shortcut(torch.ones(1, 16, 8, 8))
    assert out.shape == (1, 32, 4, 4) and out[:, :8].abs().sum() == 0 and out[:, 8:24].eq(1).all() and out[:, 24:].abs().sum() == 0
    with pytest.raises(ClassifierError, match="do not fit"):
        load_classifier(f"resnet56-cifar10:{path}")
    with pytest.raises(ClassifierError, match="needs its weights file"):
        load_classifier("resnet56-cifar10")


def test_real_resnet56_loads_and_classifies_cifar(shared_data):
    weights = shared_data.parent / "models" / "cifar10-resnet" / "resnet56-4bfd9763.th"
    if not weights.is_file() or not (shared_data / "cifar10.zip").is_file():
        pytest.skip("shared ResNet-56 or CIFAR-10 not present")
    classifier = load_classifier(f"resnet56-cifar10:{weights}")
    from PIL import Image

    with zipfile.ZipFile(shared_data / "cifar10.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("test/") and n.endswith(".jpg"))[::250][:40]
        images = torch.stack([torch.from_numpy(np.array(Image.open(io.BytesIO(archive.read(n))).convert("RGB"))).permute(2, 0, 1) for n in names])
    labels = torch.tensor([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names])
    accuracy = M.accuracy(classifier.probabilities(images.float() / 255), labels)
    assert accuracy >= 0.65, accuracy  # 83 % on the whole JPEG test set


def test_torchvision_classifier_from_local_file_and_offline_message(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    fine_tuned = torchvision.models.mobilenet_v3_small(num_classes=3)
    path = tmp_path / "mobilenet.pth"
    torch.save(fine_tuned.state_dict(), path)
    classifier = load_classifier(f"mobilenet_v3_small:{path}")
    assert classifier.num_classes == 3 and classifier.class_names is None and classifier.trained_on == "fine-tuned (3 classes)"
    assert classifier.input_size == 224 and classifier.feature_dim == 1024
    probabilities, _ = classifier.outputs(torch.rand(2, 3, 40, 50))  # any size: resized to the input size
    assert probabilities.shape == (2, 3) and torch.allclose(probabilities.sum(-1), torch.ones(2))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ClassifierError, match=r"resnet18:PATH"):
        load_classifier("resnet18")
    with pytest.raises(ClassifierError, match="unknown classifier"):
        load_classifier("no-such-net")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ClassifierError, match="not a readable state dict"):
        load_classifier(f"mobilenet_v3_small:{tmp_path / 'junk.pth'}")


def test_finetune_for_omega_depends_only_on_the_images(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "r20.th"
    _save_cifar_checkpoint(path, CifarResNet(20))
    classifier = load_classifier(f"resnet20-cifar10:{path}")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    other = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(8) % 10
    first = finetune(classifier, images, labels, steps=2, batch_size=4)
    again = finetune(classifier, images, labels, steps=2, batch_size=4)
    different = finetune(classifier, other, labels, steps=2, batch_size=4)
    assert M.omega(first, again) == 0.0  # same images, same seed: identical weights
    assert M.omega(first, different) > 0.0
    assert M.omega(classifier.network, first) > 0.0  # training moved the weights
    assert all(not p.requires_grad for p in classifier.network.parameters())  # the original stays frozen
