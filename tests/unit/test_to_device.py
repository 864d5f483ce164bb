"""Host data for the device (to_device.py): the values and type `torch.tensor` makes, not shared with the caller.

That they are not waited for is counted on the meta device (test_device_waits.py) and, on a GPU, by the
GPU suite's exactness part (tests/bench/gpu_suite/).
"""

import numpy as np
import pytest
import torch

from services.inference.diffusion.to_device import on_device


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([981.0, 981.0, 961.0, 961.0], torch.float32),
        (np.repeat([2, 0, 1], 2), torch.long),
        ([7.5, 0.0, 1.5], torch.float32),
    ],
)
def test_the_numbers_arrive_as_torch_tensor_makes_them(values, dtype):
    made = on_device(values, dtype, torch.device("cpu"))
    expected = torch.tensor(values, dtype=dtype)
    assert made.dtype == dtype and made.device.type == "cpu"
    assert torch.equal(made, expected)


def test_the_values_are_copied_not_shared():
    source = np.array([1.0, 2.0])
    made = on_device(source, torch.float32, torch.device("cpu"))
    source[0] = 5.0
    assert made.tolist() == [1.0, 2.0]
