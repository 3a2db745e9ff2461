"""Settings: the declaration (flags, keys, identity, resume), validation, the learning-rate schedule."""
import dataclasses
import math
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.commands.run import given_settings
from harness.config import CONTROLS, IDENTITY, RESUME_FIXED, SETTINGS, RunConfig, lr_at, resume_conflicts
from harness.errors import BenchError
from harness.measure.flops import forward_flops
from harness.catalogue import MODELS
from harness.init_weights import initial_state


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "resnet21"}, "--model must be one of .*got 'resnet21' \\(did you mean 'resnet\\d+'\\?\\)"),
    ({"backends": ["mxnet"]}, "--backend must be one of torch, chainer.*got 'mxnet'"),
    ({"backends": ["onnxruntime"]}, "must be one of torch, chainer"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"optimizer": "rmsprop"}, "--optimizer must be one of sgd, adam; got 'rmsprop'"),
    ({"epochs": 0}, "--epochs must be positive"),
    ({"batch_size": -1}, "--batch-size must be positive"),
    ({"lr": 0.0}, "--lr must be positive"),
    ({"lr": float("inf")}, "--lr must be positive"),
    ({"sample_interval_s": 0}, "--sample-interval must be a positive number of seconds, got 0"),
    ({"device": "gpu"}, "unknown device 'gpu'"),
    ({"no_skip": ("layer4.0",)}, "unknown blocks layer4.0"),
    ({"target_acc": 90}, "fraction"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(BenchError, match=message):
        RunConfig(**kwargs).validate()


def test_schedules():
    cfg = RunConfig(epochs=4, lr=0.1, schedule="cosine")
    assert [round(lr_at(cfg, e), 6) for e in range(1, 5)] == [0.1, round(0.05 * (1 + math.cos(math.pi / 4)), 6), 0.05,
                                                              round(0.05 * (1 + math.cos(3 * math.pi / 4)), 6)]
    cfg = RunConfig(epochs=8, lr=0.1, schedule="step")
    assert [round(lr_at(cfg, e), 6) for e in range(1, 9)] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2
    assert RunConfig(optimizer="adam").learning_rate == 1e-3


# --- the declaration -----------------------------------------------------------------------------

def _run_actions():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return [a for a in sub.choices["run"]._actions if a.option_strings and a.dest != "help"]


def test_every_setting_is_a_flag_and_every_flag_a_setting():
    by_dest = {a.dest: a for a in _run_actions()}
    # the flags that are no setting: which run folder to continue (and --restart), which experiment
    # file, list its cells instead of running them, and --repeat auto's stopping rule (harness/experiments/)
    assert set(by_dest) == set(SETTINGS) | {"resume", "restart", "config", "dry_run", "repeat_rsd", "repeat_max"}
    for name, s in SETTINGS.items():
        action = by_dest[name]
        assert action.option_strings == [s.flag] and action.default is None and action.help.startswith(s.help)
        if s.choices:
            assert list(action.choices) == list(s.choices)
    # the conventions the flags had by hand
    assert by_dest["backends"].option_strings == ["--backend"] and isinstance(by_dest["backends"].default, type(None))
    assert by_dest["sample_interval_s"].option_strings == ["--sample-interval"]
    args = build_parser().parse_args(["run", "--backend", "torch", "--backend", "chainer", "--no-skip",
                                      "layer1.0,layer2.1", "--no-download", "--sample-interval", "2"])
    assert given_settings(args) == {"backends": ["torch", "chainer"], "no_skip": ("layer1.0", "layer2.1"),
                                    "download": False, "sample_interval_s": 2.0}
    assert given_settings(build_parser().parse_args(["run"])) == {}  # nothing typed: nothing given


def test_settings_records_every_field_with_defaults_resolved():
    settings = RunConfig(optimizer="adam").settings()
    assert list(settings) == [f.name for f in dataclasses.fields(RunConfig)]
    assert settings["lr"] == 1e-3 and settings["image_size"] == 32 and settings["augment"] == "crop_flip"
    assert settings["data_dir"] == "data" and settings["no_skip"] == []


def test_roles_are_consistent():
    assert set(IDENTITY) <= set(RESUME_FIXED)  # a resumed run's epochs are all one configuration
    assert not set(IDENTITY) & set(CONTROLS) and not set(RESUME_FIXED) & set(CONTROLS)
    assert {"backends", "seed"} <= set(RESUME_FIXED) and {"quiet", "results_dir"} <= set(CONTROLS)
    # --resume never ignores a flag: each setting is either refused when it differs, or applied
    assert set(RESUME_FIXED) | set(CONTROLS) == set(SETTINGS)


def test_identity():
    base = RunConfig()
    assert RunConfig().identity_key() == base.identity_key()
    # which runs / where and how they are shown: same configuration
    same = dict(seed=3, backends=["chainer"], repeat=4, quiet=True, results_dir=Path("elsewhere"),
                data_dir=Path("d"), download=False, sample_interval_s=2.0, target_acc=0.5)
    assert RunConfig(**same).identity_key() == base.identity_key()
    # every identity setting, changed, is another configuration
    changed = dict(device="cuda", model="resnet32", dataset="cifar10", epochs=6, batch_size=64, lr=0.2,
                   optimizer="adam", momentum=0.8, weight_decay=0.0, schedule="step", train_size=100, test_size=10,
                   threads=2, shortcut="B", no_skip=("layer1.0",), freeze="backbone", train_bn=True, head="mlp",
                   augment="none", weights="imagenet", cache_features=True, image_size=64, eval_batch_size=32,
                   normalize="none", eval_resize=40, rotate=30.0, valid_size=50, allow_truncated=True,
                   deterministic=True, precision="bf16-mixed", compile="default")
    assert set(changed) == set(IDENTITY)
    for name, value in changed.items():
        assert RunConfig(**{name: value}).identity_key() != base.identity_key(), name
    # a default left implicit and the same value given are one configuration
    assert RunConfig(lr=0.1, image_size=32).identity_key() == base.identity_key()
    assert RunConfig(eval_batch_size=128).identity_key() == base.identity_key()  # --batch-size's value


def test_identity_of_an_old_folder_fills_settings_it_lacks():
    from harness.config import identity_settings

    recorded = RunConfig().settings()
    del recorded["cache_features"]  # as if written before the setting existed
    assert identity_settings(recorded) == RunConfig().identity()


def test_resume_conflicts_name_the_flag():
    recorded = RunConfig(backends=["torch"], epochs=3)
    assert resume_conflicts(recorded, {"epochs": 3, "backends": ["torch"], "quiet": True}) == []
    assert resume_conflicts(recorded, {"epochs": 9, "threads": 2}) == ["--epochs 9 (run has 3)",
                                                                      "--threads 2 (run has None)"]


# --- from_mapping --------------------------------------------------------------------------------

def test_from_mapping_accepts_flag_and_field_names():
    config = RunConfig.from_mapping({"backend": "chainer", "batch-size": "64", "weight_decay": 0, "no-skip":
                                     "layer1.0", "no-download": True, "sample_interval": 1, "data-dir": "d",
                                     "train_bn": "true", "target-acc": 0.5}, source="exp.toml")
    assert config.backends == ["chainer"] and config.batch_size == 64 and config.weight_decay == 0.0
    assert config.no_skip == ("layer1.0",) and config.download is False and config.sample_interval_s == 1.0
    assert config.data_dir == Path("d") and config.train_bn is True and config.target_acc == 0.5
    assert RunConfig.from_mapping({"download": False}, source="x").download is False
    assert RunConfig.from_mapping({}, source="x") == RunConfig()


def test_flags_override_the_mapping():
    given = given_settings(build_parser().parse_args(["run", "--epochs", "2"]))
    config = RunConfig.from_mapping({"epochs": 7, "batch_size": 32}, source="exp.toml", overrides=given)
    assert config.epochs == 2 and config.batch_size == 32


@pytest.mark.parametrize("values, message", [
    ({"epoch": 3}, r"exp\.toml: unknown setting 'epoch' \(did you mean 'epochs'\?\).*bench run --help"),
    ({"lerning-rate": 0.1}, r"exp\.toml: unknown setting 'lerning-rate'"),
    ({"epochs": "five"}, r"exp\.toml: epochs must be an integer, got 'five'"),
    ({"epochs": 2.5}, r"exp\.toml: epochs must be an integer, got 2\.5"),
    ({"quiet": "yes"}, r"exp\.toml: quiet must be true or false, got 'yes'"),
    ({"optimizer": "adamw"}, r"exp\.toml: optimizer must be one of sgd, adam; got 'adamw' \(did you mean 'adam'\?\)"),
    ({"backend": ["torch", "mxnet"]}, r"exp\.toml: backend must be one of .*got 'mxnet'"),
    ({"batch-size": 0}, r"exp\.toml: batch-size must be positive, got 0"),
    ({"epochs": None}, r"exp\.toml: epochs cannot be empty"),
    ({"batch_size": 8, "batch-size": 8}, r"'batch_size' and 'batch-size' are the same setting"),
])
def test_from_mapping_names_the_source_and_key(values, message):
    with pytest.raises(BenchError, match=message):
        RunConfig.from_mapping(values, source="exp.toml")


def test_flops_match_published_counts():
    # torchvision's documented GFLOPS (multiply-adds) at 224 px: resnet18 1.81, resnet50 4.09;
    # He et al. 2016 quote ~41 M multiply-adds for CIFAR ResNet-20.
    def gmacs(name, size, classes):
        backbone, head = forward_flops(MODELS[name], image_size=size, num_classes=classes)
        return (backbone + head) / 2e9
    assert gmacs("resnet18", 224, 1000) == pytest.approx(1.81, abs=0.01)
    assert gmacs("resnet50", 224, 1000) == pytest.approx(4.09, abs=0.01)
    assert gmacs("resnet20", 32, 10) == pytest.approx(0.0406, abs=0.001)


def test_initial_state_is_deterministic_and_scaled():
    shapes = {"conv1.weight": (16, 3, 3, 3), "bn1.weight": (16,), "bn1.bias": (16,), "bn1.running_mean": (16,),
              "bn1.running_var": (16,), "fc.weight": (10, 64), "fc.bias": (10,)}
    a, b = initial_state(shapes, 0), initial_state(shapes, 0)
    assert all((a[k] == b[k]).all() for k in shapes)
    assert not (initial_state(shapes, 1)["conv1.weight"] == a["conv1.weight"]).all()
    assert (a["bn1.weight"] == 1).all() and (a["bn1.running_var"] == 1).all() and (a["bn1.bias"] == 0).all()
    big = initial_state({"c.weight": (256, 64, 3, 3)}, 0)["c.weight"]
    assert big.std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)  # Kaiming normal, fan_out
    assert abs(a["fc.weight"]).max() <= 1 / math.sqrt(64)


def test_from_recorded_round_trips_run_json_settings():
    config = RunConfig(model="resnet8", no_skip=("layer1.0",), data_dir=Path("d"), threads=2, epochs=3)
    recorded = config.settings() | {"backend": "chainer", "seed": 4, "from_a_newer_bench": 1}
    back = RunConfig.from_recorded(recorded, Path("res"))
    assert back.identity() == config.identity() and back.backends == ["chainer"] and back.seed == 4
    assert back.data_dir == Path("d") and back.no_skip == ("layer1.0",) and back.results_dir == Path("res")
