import json

import pytest
import torch
from safetensors.torch import save_file

from recolor.checkpoint import (
    CheckpointError, load_checkpoint, load_optimizer_states, save_checkpoint, save_optimizer_states,
)
from recolor.inference import Colorizer
from recolor.registry import get_model_spec


def test_weights_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    spec = get_model_spec("pix2pix")
    config = spec.config({"ngf": 8, "num_downs": 5, "image_size": 32})
    generator = spec.build(config).eval()
    path = save_checkpoint(tmp_path / "g.safetensors", generator.state_dict(), "pix2pix", config, extra={"note": "x"})
    loaded = load_checkpoint(path)
    assert loaded.model == "pix2pix" and loaded.config == config and loaded.extra == {"note": "x"}
    colorizer = Colorizer.load(path, device="cpu", precision="fp32")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(colorizer.generator(x), generator(x), atol=1e-6)


def test_fp16_export_halves_the_floats(tmp_path, tiny_pix2pix_checkpoint):
    loaded = load_checkpoint(tiny_pix2pix_checkpoint)
    assert {t.dtype for t in loaded.tensors.values() if t.is_floating_point()} == {torch.float16}
    assert Colorizer.load(tiny_pix2pix_checkpoint, device="cpu").generator.down[0][0].weight.dtype == torch.float32


def test_missing_metadata_is_a_clear_error(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a recolor checkpoint"):
        load_checkpoint(path)


def test_wrong_metadata_is_a_clear_error(tmp_path, tiny_pix2pix_checkpoint):
    state = load_checkpoint(tiny_pix2pix_checkpoint).tensors
    bad_json = tmp_path / "badjson.safetensors"
    save_file(state, str(bad_json), metadata={"recolor.model": "pix2pix", "recolor.config": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad_json)
    unknown = tmp_path / "unknown.safetensors"
    save_file(state, str(unknown), metadata={"recolor.model": "no-such-model", "recolor.config": "{}"})
    with pytest.raises(CheckpointError, match="unknown model"):
        Colorizer.load(unknown)
    mismatched = tmp_path / "mismatch.safetensors"
    config = get_model_spec("pix2pix").config({"ngf": 16, "num_downs": 5})  # says 16, weights are 8 wide
    save_file(state, str(mismatched), metadata={"recolor.model": "pix2pix", "recolor.config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="do not fit"):
        Colorizer.load(mismatched)
    typo = tmp_path / "typo.safetensors"
    save_file(state, str(typo), metadata={"recolor.model": "pix2pix", "recolor.config": json.dumps({"ngf_typo": 8})})
    # inference rebuilds from the architecture keys only (training keys are the recipes'), so a
    # misspelt key leaves ngf at its default and the 8-wide tensors are refused before allocating
    with pytest.raises(CheckpointError, match="typo.safetensors: tensors do not fit"):
        Colorizer.load(typo)
    import recolor.training  # noqa: F401  (attaches the recipes: training configs are checked in full)

    with pytest.raises(KeyError, match="no config key 'ngf_typo'"):
        get_model_spec("pix2pix").config({"ngf_typo": 8})


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_optimizer_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
    save_optimizer_states(tmp_path / "opt.safetensors", {"generator": optimizer.state_dict()})
    restored = torch.optim.Adam(model.parameters(), lr=0.5)
    restored.load_state_dict(load_optimizer_states(tmp_path / "opt.safetensors")["generator"])
    original, loaded = optimizer.state_dict(), restored.state_dict()
    assert loaded["param_groups"][0]["lr"] == 1e-3 and tuple(loaded["param_groups"][0]["betas"]) == (0.5, 0.999)
    for key in original["state"]:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(original["state"][key][field]), torch.as_tensor(loaded["state"][key][field]))


def test_importing_inference_loads_no_training_module_nor_rich_progress():
    import subprocess
    import sys

    code = ("import sys, recolor.inference, recolor.diverse; "
            "print(sorted(m for m in sys.modules if m.startswith('recolor.training') or m == 'rich.progress'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_colorizing_with_a_model_that_needs_neither_loads_no_timm_nor_torchvision():
    """Every network file is imported to register its model, so the heavy libraries (seconds to
    import) are imported only by the builders that need them (timm: effnet-unet, torchvision: resnet18)."""
    import subprocess
    import sys

    code = ("import sys; from recolor.inference import Colorizer; Colorizer.load('pix2pix', device='cpu'); "
            "print(sorted(m for m in ('timm', 'torchvision', 'recolor.training') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_registered_name_wins_over_a_same_named_folder_or_file(tmp_path, monkeypatch):
    from recolor.checkpoint import find_weights, shipped_weights

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pix2pix").mkdir()  # e.g. a run folder named after the model
    assert find_weights("pix2pix") == shipped_weights("pix2pix")
    (tmp_path / "resnet18").write_bytes(b"not weights")
    assert find_weights("resnet18") == shipped_weights("resnet18")
    assert find_weights("./resnet18").resolve() == tmp_path / "resnet18"  # a path when written as one
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        find_weights("./pix2pix")


def test_loading_builds_for_real_a_network_whose_constructor_makes_an_unstored_tensor():
    from torch import nn

    from recolor.pretrained import _network_with_weights
    from recolor.registry import ModelSpec

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.register_buffer("scale", torch.arange(1.0, 3.0), persistent=False)  # meta under a meta build

    spec = ModelSpec(name="scaled", description="", paper="", build=lambda config: Scaled(), architecture={})
    state = {"linear.weight": torch.full((2, 2), 0.5), "linear.bias": torch.ones(2)}
    network = _network_with_weights(spec, {}, state)
    assert torch.equal(network.scale, torch.tensor([1.0, 2.0]))
    assert torch.equal(network.linear.weight, state["linear.weight"]) and torch.equal(network.linear.bias, state["linear.bias"])


def test_loading_keeps_integer_buffers_integer(tiny_pix2pix_checkpoint):
    from recolor.pretrained import load_pretrained

    state = load_pretrained(tiny_pix2pix_checkpoint).network.state_dict()
    counters = {key: value for key, value in state.items() if key.endswith("num_batches_tracked")}
    assert counters and {value.dtype for value in counters.values()} == {torch.int64}  # BatchNorm's batch counters
    assert {value.dtype for value in state.values() if value.is_floating_point()} == {torch.float32}


def test_an_fp16_export_keeps_a_tensor_beyond_fp16s_range_in_fp32(tmp_path):
    from recolor.pretrained import load_pretrained, save_pretrained

    spec = get_model_spec("pix2pix")
    config = spec.architecture_config({"ngf": 8, "num_downs": 5, "image_size": 32})
    network = spec.build(config)
    key = next(key for key in network.state_dict() if key.endswith("running_var"))
    network.state_dict()[key].fill_(1e5)  # a BatchNorm variance beyond fp16's 65,504 (it would become inf)
    path = save_pretrained(tmp_path / "wide.safetensors", network, "pix2pix", config)
    stored = load_checkpoint(path).tensors
    assert stored[key].dtype == torch.float32 and stored["down.0.0.weight"].dtype == torch.float16
    loaded = load_pretrained(path).network.state_dict()[key]
    assert torch.equal(loaded, torch.full_like(loaded, 1e5))
