"""The one device parser: the spellings bench accepts and the one-line error for the rest."""
import pytest

from harness.device import Device, parse_device
from harness.errors import BenchError


@pytest.mark.parametrize("text, kind, index, ordinal", [
    ("cpu", "cpu", None, None), ("cuda", "cuda", None, 0), ("cuda:0", "cuda", 0, 0), ("cuda:3", "cuda", 3, 3),
])
def test_parse_device_accepts(text, kind, index, ordinal):
    device = parse_device(text)
    assert device == Device(kind, index)
    assert device.ordinal == ordinal
    assert str(device) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "CUDA", "cuda:-1", ""])
def test_parse_device_refuses_in_one_line(text):
    with pytest.raises(BenchError, match=r"unknown device .*: use cpu, cuda or cuda:N") as info:
        parse_device(text)
    assert "\n" not in str(info.value)
