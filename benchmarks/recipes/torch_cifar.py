"""Baseline: the widely copied PyTorch ResNet-20 CIFAR-10 recipe, written as people write it.

Source: akamaster/pytorch_resnet_cifar10 ``trainer.py`` (the recipe most CIFAR ResNet
repositories copy): torchvision transforms on PIL images -- ``RandomHorizontalFlip``,
``RandomCrop(32, 4)``, ``ToTensor``, ``Normalize`` -- in a ``DataLoader`` with worker
processes, ``CrossEntropyLoss``, ``SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)``, and a loop
that reads ``loss.item()`` and a top-1 accuracy every step for its meters.

Kept from the original: the data path (PIL image per sample, per-sample transforms, default
collate), the per-step ``.item()`` reads and ``accuracy()``, the model in the default
(contiguous NCHW) memory format with the framework's default thread settings.
Changed, and why:
- the model is bench's ``resnet_cifar(depth=20)`` (the same network as akamaster's
  ``resnet20``: option-A shortcuts, 0.27 M parameters) so both sides train identical maths;
- 2 workers (akamaster's default is 4) because this machine has 2 cores;
- ``Normalize`` uses the CIFAR-10 mean/std bench uses (akamaster uses ImageNet's; same cost);
- the dataset is an in-memory array served exactly as ``torchvision.datasets.CIFAR10``
  serves its own (``Image.fromarray`` then the transform), so no download is needed;
- ``.cuda()`` became ``.to(device)``, ``DataParallel`` (a no-op wrapper on one device) and
  ``cudnn.benchmark`` (CUDA only) are left out, and ``pin_memory`` is used only on CUDA
  (on a CPU-only machine torch ignores it with a warning);
- the ``MultiStepLR`` schedule (one call per epoch) and the per-epoch validation and
  checkpoint are left out: bench's ``train_time_s``, which this is compared with, has none.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torchvision.transforms as transforms
from PIL import Image
from torch import nn

from backends.torch_impl.models.resnet_cifar import resnet_cifar
from harness.catalogue import CIFAR_MEAN, CIFAR_STD

SETTINGS = {
    "batch_size": 128,  # images per step (akamaster default)
    "workers": 2,  # DataLoader processes (akamaster: 4; this machine has 2 cores)
    "lr": 0.1,  # He et al. 2016
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "print_freq": 50,  # steps between log lines (akamaster default)
}


class ArrayCIFAR(torch.utils.data.Dataset):
    """uint8 NHWC images served like ``torchvision.datasets.CIFAR10.__getitem__``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None) -> None:
        self.data = images  # (N, 32, 32, 3) uint8, torchvision's layout for CIFAR10.data
        self.targets = [int(t) for t in labels]  # torchvision keeps a list of ints
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def train_transform(mean=CIFAR_MEAN, std=CIFAR_STD) -> transforms.Compose:
    return transforms.Compose([
        transforms.RandomHorizontalFlip(),
        transforms.RandomCrop(32, 4),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(mean), std=list(std)),
    ])


def make_loader(images: np.ndarray, labels: np.ndarray, *, batch_size: int = SETTINGS["batch_size"],
                workers: int = SETTINGS["workers"], device: str = "cpu") -> torch.utils.data.DataLoader:
    dataset = ArrayCIFAR(images, labels, transform=train_transform())
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=torch.device(device).type == "cuda")


def build(*, depth: int = 20, num_classes: int = 10, device: str = "cpu"):
    """(model, criterion, optimizer) as in akamaster's ``main()``."""
    model = resnet_cifar(depth=depth, num_classes=num_classes).to(device)
    criterion = nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(model.parameters(), SETTINGS["lr"], momentum=SETTINGS["momentum"],
                                weight_decay=SETTINGS["weight_decay"])
    return model, criterion, optimizer


class AverageMeter:
    """Computes and stores the average and current value (akamaster's helper)."""

    def __init__(self) -> None:
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Precision@k for the specified values of k (akamaster's helper, verbatim in substance)."""
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res


@dataclass
class EpochResult:
    images: int
    seconds: float
    loss: float
    top1: float  # percent

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def train(train_loader, model, criterion, optimizer, epoch: int, *, device: str = "cpu",
          max_steps: int | None = None, log: Callable[[str], None] | None = print) -> EpochResult:
    """One epoch, as akamaster's ``train()``; the wall time includes starting the loader's
    workers, which the recipe pays every epoch."""
    batch_time, data_time, losses, top1 = AverageMeter(), AverageMeter(), AverageMeter(), AverageMeter()
    model.train()
    start = end = time.perf_counter()
    images = 0
    for i, (input, target) in enumerate(train_loader):
        if max_steps is not None and i >= max_steps:
            break
        data_time.update(time.perf_counter() - end)
        target = target.to(device)
        input_var = input.to(device)
        output = model(input_var)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        output = output.float()
        loss = loss.float()
        prec1 = accuracy(output.data, target)[0]
        losses.update(loss.item(), input.size(0))
        top1.update(prec1.item(), input.size(0))
        images += input.size(0)
        batch_time.update(time.perf_counter() - end)
        end = time.perf_counter()
        if log is not None and i % SETTINGS["print_freq"] == 0:
            log(f"Epoch: [{epoch}][{i}/{len(train_loader)}]\tTime {batch_time.val:.3f} ({batch_time.avg:.3f})\t"
                f"Data {data_time.val:.3f} ({data_time.avg:.3f})\tLoss {losses.val:.4f} ({losses.avg:.4f})\t"
                f"Prec@1 {top1.val:.3f} ({top1.avg:.3f})")
    return EpochResult(images, time.perf_counter() - start, losses.avg, top1.avg)


def run(images: np.ndarray, labels: np.ndarray, *, epochs: int, depth: int = 20, num_classes: int = 10,
        batch_size: int = SETTINGS["batch_size"], workers: int = SETTINGS["workers"], seed: int = 0,
        max_steps: int | None = None, log: Callable[[str], None] | None = print) -> list[EpochResult]:
    """Train ``epochs`` epochs on uint8 NHWC ``images``; one :class:`EpochResult` per epoch."""
    torch.manual_seed(seed)
    loader = make_loader(images, labels, batch_size=batch_size, workers=workers)
    model, criterion, optimizer = build(depth=depth, num_classes=num_classes)
    return [train(loader, model, criterion, optimizer, epoch, max_steps=max_steps, log=log)
            for epoch in range(epochs)]
