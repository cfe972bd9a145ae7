"""Fixtures shared by the test files: a tiny synthetic dataset, one-thread determinism and the
book built once per session."""
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book built once per test session, at the smoke profile, with warnings as errors
    (``tests/test_book.py`` and ``tests/test_book_html.py`` both read it); its ``_build``."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("book_build")
    # one torch thread per kernel: with two threads and a core busy elsewhere, the sparse
    # convolutions ran up to 20x slower, and this test's time should not depend on the machine
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run([sys.executable, "-m", "twist_lib.book", "build", "--profile", "smoke",
                           "--out", str(out)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1500)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"jupyter-book build failed (-W):\n{tail}"
    return out / "_build"
