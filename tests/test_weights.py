"""``--weights none | imagenet | PATH``, torchvision's cache, and ``bench weights convert``.

No ImageNet file can be downloaded here: the tests write torchvision ``state_dict`` files
of randomly initialised torchvision models (same names and shapes as the real ones) and
point ``TORCH_HOME``/``BENCH_CACHE_DIR`` at temporary folders.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from backends.torch_impl import weights as torch_weights
from backends.torch_impl.models import build_model
from harness import weights as W
from harness.backend import ModelSpec
from harness.cli import main
from harness.config import RunConfig
from harness.errors import BenchError
from harness.train.prepare import prepare_backend


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "bench-cache"))


def torchvision_file(path: Path, name: str = "resnet18", seed: int = 0) -> Path:
    """A torchvision state_dict as torch.save writes it (random weights, real names/shapes)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(torchvision.models, name)().state_dict(), path)
    return path


def shapes_of(name: str, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no init
        model = build_model(ModelSpec(name, classes, 224))
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


# ------------------------------------------------------------------------- Locations
def test_imagenet_weights_live_in_torchvisions_cache(monkeypatch, tmp_path) -> None:
    path, url = W.imagenet_location("resnet50")
    assert path == tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.imagenet_location("resnet152")[0] == tmp_path / "xdg/torch/hub/checkpoints/resnet152-394f9c45.pth"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert W.checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"  # torch's own answer
    with pytest.raises(BenchError, match="resnet18, resnet34, resnet50, resnet101, resnet152 only, not resnet20"):
        W.imagenet_location("resnet20")


def test_offline_without_the_file_says_where_it_goes(tmp_path, capsys) -> None:
    code = main(["run", "--model", "resnet18", "--weights", "imagenet", "--no-download", "--dataset", "synthetic",
                 "--results-dir", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path / "torch-home/hub/checkpoints/resnet18-f37072fd.pth") in err
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert not (tmp_path / "results").exists()  # failed before anything was made
    with pytest.raises(BenchError, match="no such file"):
        RunConfig(weights=str(tmp_path / "missing.pth")).validate()


def test_cached_imagenet_file_is_used_offline_with_a_new_head(tmp_path) -> None:
    path, _ = W.imagenet_location("resnet18")
    torchvision_file(path)
    source = W.resolve("imagenet", "resnet18", download=False)
    assert source.path == path and source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source.official is False  # not torchvision's bytes: recorded, and warned about
    config = RunConfig(model="resnet18", weights="imagenet", download=False, image_size=32, quiet=True)
    prepared = prepare_backend(config, "torch", 0, 3)
    state, expected = prepared.backend.state_arrays(), torch_weights.read_state_dict(path)
    for name, value in state.items():
        if not name.startswith("fc."):
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert state["fc.weight"].shape == (3, 512)  # ImageNet's (1000, 512) head was not loaded
    info = prepared.weights
    assert info["source"] == "imagenet" and info["sha256"] == source.sha256 and info["reinitialised"] == ["fc"]
    assert "new, canonical init" in info["head"] and "(1000, 512)" in info["head"]


def test_download_goes_through_torch_hub_and_checks_the_hash(tmp_path) -> None:
    src = torchvision_file(tmp_path / "server" / "model.pth")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    served = src.rename(src.with_name(f"resnet18-{digest[:8]}.pth"))
    dest = tmp_path / "cache" / served.name
    torch_weights.download(served.as_uri(), dest)
    assert dest.read_bytes() == served.read_bytes()
    bad = served.rename(served.with_name("resnet18-00000000.pth"))
    with pytest.raises(BenchError, match="damaged"):
        torch_weights.download(bad.as_uri(), tmp_path / "cache" / bad.name)
    assert not (tmp_path / "cache" / bad.name).exists()


# ------------------------------------------------------------------------- Reading files
def test_state_dict_files_read_as_canonical_arrays(tmp_path) -> None:
    path = torchvision_file(tmp_path / "r18.pth")
    arrays = torch_weights.read_state_dict(path)
    assert "layer1.0.conv1.weight" in arrays and not any(k.endswith("num_batches_tracked") for k in arrays)
    assert all(v.dtype == np.float32 for v in arrays.values())
    state = torch.load(path, weights_only=True)
    torch.save({"model": {f"module.{k}": v.double() for k, v in state.items()}}, tmp_path / "nested.pt")
    nested = torch_weights.read_state_dict(tmp_path / "nested.pt")  # DDP prefix, float64, nested
    assert set(nested) == set(arrays) and all(np.array_equal(nested[k], arrays[k]) for k in arrays)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(BenchError, match="not a state_dict"):
        torch_weights.read_state_dict(tmp_path / "list.pt")
    (tmp_path / "junk.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BenchError, match="damaged"):
        torch_weights.read_state_dict(tmp_path / "junk.pth")


# ------------------------------------------------------------------------- Wrong architecture
def test_weights_of_another_architecture_are_rejected_naming_the_mismatches(tmp_path) -> None:
    r18 = torch_weights.read_state_dict(torchvision_file(tmp_path / "r18.pth"))
    with pytest.raises(BenchError, match=r"do not fit resnet50: layer1\.0\.conv1\.weight: \(64, 64, 3, 3\) but the "
                                         r"model has \(64, 64, 1, 1\).*look like resnet18's"):
        W.fit(r18, shapes_of("resnet50"), model="resnet50")
    damaged = dict(r18, **{"layer3.1.bn2.running_var": np.ones(7, np.float32)})
    del damaged["layer2.0.downsample.0.weight"]
    with pytest.raises(BenchError) as info:
        W.fit(damaged, shapes_of("resnet18"), model="resnet18")
    message = str(info.value)
    assert "layer3.1.bn2.running_var: (7,) but the model has (256,)" in message
    assert "missing layer2.0.downsample.0.weight" in message and "look like" not in message
    load, info2 = W.fit(r18, shapes_of("resnet18", classes=1000), model="resnet18", no_skip=("layer2.1",))
    assert info2["head"] == "loaded from the weights" and info2["reinitialised"] == ["layer2.1"]
    assert "fc.weight" in load and not any(k.startswith("layer2.1.") for k in load)


def test_convert_writes_chainer_npz_and_rejects_the_wrong_model(tmp_path, capsys) -> None:
    src = torchvision_file(tmp_path / "r18.pth")
    assert main(["weights", "convert", str(src)]) == 0
    assert "resnet18" in capsys.readouterr().out
    converted = W.load_npz(src.with_suffix(".npz"))
    expected = torch_weights.read_state_dict(src)
    assert set(converted) == set(expected) and all(np.array_equal(converted[k], expected[k]) for k in expected)
    assert main(["weights", "convert", str(src), "--model", "resnet34", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "different architecture than resnet34" in err and "look like resnet18's" in err
    assert not (tmp_path / "x.npz").exists()
    assert main(["weights", "where", "resnet18"]) == 0
    assert "missing" in capsys.readouterr().out


def test_chainer_gets_a_conversion_cached_by_checksum(tmp_path, monkeypatch) -> None:
    src = torchvision_file(tmp_path / "r18.pth")
    config = RunConfig(model="resnet18", weights=str(src), image_size=32, quiet=True, backends=["chainer"])
    chainer_state = prepare_backend(config, "chainer", 0, 3).backend.state_arrays()
    npz = W.converted_path(W.file_sha256(src))
    assert npz.is_file() and npz.parent == tmp_path / "bench-cache" / "weights"
    expected = torch_weights.read_state_dict(src)
    assert all(np.array_equal(chainer_state[k], expected[k]) for k in expected if not k.startswith("fc."))

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again although the cache holds this file")
    monkeypatch.setattr(W, "convert_in_subprocess", no_conversion)
    again = prepare_backend(config, "chainer", 0, 3)
    assert again.weights["read_from"] == str(npz)
