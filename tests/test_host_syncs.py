"""The CUDA-path audit (bench/host_syncs.py): no stage of a self-training step reads the device
from the host once per point or per proposal. The counter is checked on hand-made calls first."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import host_syncs  # noqa: E402


def test_the_counter_counts_exactly_the_calls_that_wait_for_the_device():
    x = torch.arange(10.0)
    with host_syncs.HostSyncCounter() as c:
        x.sum().item()                      # item
        x[x > 3]                            # bool-mask index
        x[torch.tensor([1, 2])]             # integer index: no sync
        if x.max() > 3:                     # __bool__
            pass
        torch.nonzero(x > 5)                # nonzero
        x.to("cpu")                         # to(cpu)
        x.to(torch.float64)                 # a dtype change: no sync
        torch.repeat_interleave(x, 2)       # an int repeat: no sync
        torch.repeat_interleave(x, torch.full((10,), 2))   # tensor repeats: sync
        torch.repeat_interleave(x, torch.full((10,), 2), output_size=20)   # given size: none
        y = x.clone()
        y[x > 8] = 0.0                      # bool-mask index (setitem)
        x + 1                               # no sync
    assert dict(c.counts) == {"item": 1, "bool-mask index": 2, "__bool__": 1, "nonzero": 1,
                              "to(cpu)": 1, "repeat_interleave": 1}


def test_no_stage_syncs_once_per_proposal(data_root, one_thread):
    result = host_syncs.audit(data_root, scenes=2)
    few, many = result["few"], result["many"]
    assert many["proposals"] >= few["proposals"] + 3   # the batches differ in their objects
    for stage in host_syncs.STAGES:
        n_few, n_many = sum(few[stage].values()), sum(many[stage].values())
        assert n_few > 0, stage   # the counter sees the stage at all
        # a per-proposal sync would add at least (many - few) proposals' worth
        assert n_many <= n_few + 2, (stage, n_few, n_many, dict(many[stage]))
