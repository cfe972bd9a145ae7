"""Fixtures shared by the test files: a tiny synthetic dataset and one-thread determinism."""
import pytest
import torch

from twist_lib.data.splits import write_label_splits
from twist_lib.synthetic import generate_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """10 cpu-size synthetic scenes (8 train, 2 val) with labelled splits of 20 % and 50 %."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 10, size="cpu", seed=3, val_fraction=0.2, progress=False)
    write_label_splits(root, ratios=(20, 50), seed=0)
    return root


@pytest.fixture
def one_thread():
    """Determinism tests run with one torch thread: with several, CPU reductions sum in a
    varying order and two identical runs differ in the last bits; with one they are
    bit-identical, so the tests can compare exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
