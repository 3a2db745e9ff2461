"""Canonical initial weights, made in numpy so every backend starts from the same numbers.

A framework comparison is only fair if both frameworks train the very same network from
the very same starting point. Each framework has its own RNG and its own default
initialisers, so instead of trusting two implementations of "Kaiming normal" the harness
draws the initial tensors itself and loads them into whichever backend runs. For a given
seed the initial weights are bit-identical across backends and machines.

The scheme is torchvision's ResNet scheme (He et al. 2015, "Delving deep into rectifiers"):
- convolution weights: Kaiming normal, fan_out, ReLU gain: N(0, 2 / (out_ch * kh * kw));
- linear weights and all biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's nn.Linear default;
- BatchNorm: weight 1, bias 0, running mean 0, running variance 1.
Each tensor has its own generator seeded by (seed, crc32(name)), so the values do not
depend on the order in which a backend lists its parameters.
"""
from __future__ import annotations

import zlib

import numpy as np


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _is_batchnorm(prefix: str, names: set[str]) -> bool:
    return f"{prefix}.running_mean" in names


def initial_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Initial float32 arrays for a state named and shaped like torchvision's state_dict."""
    names = set(shapes)
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        prefix, _, leaf = name.rpartition(".")
        if _is_batchnorm(prefix, names):
            fill = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}[leaf]
            out[name] = np.full(shape, fill, dtype=np.float32)
        elif leaf == "weight" and len(shape) == 4:
            fan_out = shape[0] * shape[2] * shape[3]
            out[name] = _rng(seed, name).normal(0.0, np.sqrt(2.0 / fan_out), shape).astype(np.float32)
        elif leaf == "weight" and len(shape) == 2:
            bound = 1.0 / np.sqrt(shape[1])
            out[name] = _rng(seed, name).uniform(-bound, bound, shape).astype(np.float32)
        elif leaf == "bias":
            weight_shape = shapes[f"{prefix}.weight"]
            fan_in = int(np.prod(weight_shape[1:]))
            bound = 1.0 / np.sqrt(fan_in)
            out[name] = _rng(seed, name).uniform(-bound, bound, shape).astype(np.float32)
        else:
            raise ValueError(f"no initialisation rule for {name} {shape}")
    return out
