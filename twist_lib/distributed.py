"""Data-parallel training and pseudo-labelling under ``torchrun`` (torch.distributed).

``torchrun --nproc_per_node=N -m twist_lib twist|train ...`` starts N processes ("ranks") with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their
environment; :func:`init_from_env` joins them into one process group (NCCL on CUDA, gloo on the
CPU) and every other function here is a collective of that group. Without ``WORLD_SIZE > 1``
(a plain ``python -m twist_lib ...``, the tests, the book) there is no process group and every
function is a no-op that answers as a single process would: rank 0 of 1, :func:`shard` returns
all items, :func:`barrier` returns at once, sums are the value itself.

What is split and what is not:

* Training (:class:`twist_lib.trainer.Trainer`): the global batch of step ``s`` is still
  ``BatchStream.batch_at(s)``; rank r loads indices ``[r::N]`` of it (of the labelled and of the
  unlabelled source alike), computes its losses, and after ``backward`` the gradients of every
  trained parameter are averaged over the ranks by :func:`average_gradients` before each
  optimizer steps, so all ranks keep identical weights.
* Pseudo-labelling (:func:`twist_lib.self_training.pseudo_label_split`): rank r labels scenes
  ``[r::N]`` of the unlabelled split.
* Rank 0 alone writes the run folder (config, logs, checkpoints, metrics, timing, rounds.csv,
  ``pseudo/_complete.json``), validates, and measures the pseudo-label quality; the other ranks
  wait for it (:func:`broadcast_object`, :func:`barrier`). Decisions taken from the run folder
  (is this stage done?) are taken by rank 0 and shared (:func:`agree`), so no rank can see a file
  another rank has just written and take another branch.

Why explicit gradient averaging and not ``DistributedDataParallel``: DDP averages gradients with
an all-reduce hooked into ``backward``; :func:`average_gradients` does the same all-reduce after
``backward`` (sum over ranks / N, one flat buffer per dtype and device), so the update is the
same. It is used because the networks are called through the trainer's helpers
(``self.models["phi"](batch)``, Psi inside ``training_samples``/``augment_and_score``): Psi runs
zero or several times per step and some parameters get no gradient on some ranks, which DDP
only accepts with ``find_unused_parameters`` and exactly one forward per backward; a DDP wrapper
would also rename the state-dict keys (``module.``) and hide ``signature()`` and ``.size``. The
cost is that communication does not overlap the backward pass. Like DDP, it averages per-rank
gradients, and the losses are means over each rank's own points: the average equals the
single-process gradient of the whole batch only when every rank holds the same number of
supervised points (otherwise points of a smaller shard weigh a little more).

Batch norm stays per rank (statistics of each rank's own voxels, like the paper's 4-GPU training
with per-GPU BN): the sparse :class:`twist_lib.sparse.layers.BatchNorm` cannot become
``torch.nn.SyncBatchNorm``. Running statistics are not averaged either; checkpoints hold rank 0's.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "session", "cleanup", "is_initialized", "rank", "world_size",
           "is_main", "barrier", "all_reduce_sum", "all_reduce_mean", "broadcast_object",
           "agree", "shard", "local_device", "broadcast_modules", "average_gradients",
           "main_first", "check_batch_sizes"]

# a rank waits this long for the others (rank 0's validation, pseudo-label quality)
TIMEOUT = datetime.timedelta(hours=2)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment when
    ``WORLD_SIZE > 1``; returns True when this call created it. Idempotent; a no-op in a single
    process. ``device`` (the config's) picks the backend: NCCL when it is ``auto``/``cuda`` and
    CUDA is available (each rank then uses ``cuda:LOCAL_RANK``), gloo otherwise."""
    if is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = str(device).split(":")[0] in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return True


def cleanup() -> None:
    """Leave the process group (after a last barrier); a no-op without one."""
    if is_initialized():
        barrier()
        dist.destroy_process_group()


@contextmanager
def session(device: str = "auto"):
    """``init_from_env`` on entry; on exit :func:`cleanup` only if this entry created the group
    (so nested sessions and callers that set up the group themselves keep it)."""
    created = init_from_env(device)
    try:
        yield
    finally:
        if created and is_initialized():
            dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def _nccl() -> bool:
    return is_initialized() and dist.get_backend() == "nccl"


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


def barrier() -> None:
    if is_initialized():
        if _nccl():
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(value):
    """The sum over ranks of a tensor (reduced in place and returned) or a number."""
    if not is_initialized():
        return value
    if torch.is_tensor(value):
        dist.all_reduce(value)
        return value
    t = torch.tensor(value, dtype=torch.float64 if isinstance(value, float) else torch.int64,
                     device=_comm_device())
    dist.all_reduce(t)
    return t.item()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor (a new tensor; the input itself without a group)."""
    if not is_initialized():
        return value
    return all_reduce_sum(value.detach().clone()) / world_size()


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: for decisions read from the run folder ("is this stage
    done?"), which every rank must take alike. A collective: every rank calls it."""
    return bool(broadcast_object(bool(flag)))


def shard(items):
    """This rank's share of ``items``: ``items[rank::world]`` (all of them in one process)."""
    return items[rank()::world_size()]


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this rank's ``cuda:LOCAL_RANK`` under torchrun."""
    if is_initialized() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. generates the synthetic data), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_modules(modules) -> None:
    """Copy rank 0's parameters and buffers into every rank's modules (as DDP does at start)."""
    if not is_initialized():
        return
    for module in modules:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(optimizers) -> None:
    """Average the gradients of every parameter of ``optimizers`` over the ranks (the update of
    ``DistributedDataParallel``). A parameter with no gradient on some rank counts as zero
    there; one with no gradient on any rank keeps ``grad = None`` (the optimizer skips it, as in
    a single process)."""
    if not is_initialized() or world_size() == 1:
        return
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
    groups: dict = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    n = world_size()
    for members in groups.values():
        has = torch.tensor([p.grad is not None for p in members], dtype=torch.int32,
                           device=members[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in members])
        dist.all_reduce(has)
        dist.all_reduce(flat)
        flat /= n
        offset = 0
        for p, used in zip(members, has.tolist()):
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p) if used else None
            offset += size


def check_batch_sizes(sources) -> None:
    """Every step must give each rank at least one scene of each source; a ``ValueError`` that
    names what limits the step's scenes and the fix otherwise.

    ``sources`` are the trainer's ``(dataset, BatchStream)`` pairs (the labelled split first, a
    TWIST round's unlabelled split second). A stream's batch is the configured batch size capped
    at its split's size (:class:`twist_lib.trainer.BatchStream`), so a step with fewer scenes than
    processes has one of two causes, and the message names the one that applies:

    * the split itself has fewer scenes than processes (e.g. the smoke profile's 12 synthetic
      scenes at ``label_ratio=5``: 1 labelled scene), which no batch size can fix: the message
      gives the split's size and label ratio and says to raise ``label_ratio`` (labelled split)
      or lower it (unlabelled split), to raise ``synthetic_scenes`` (synthetic data only), or to
      start fewer processes;
    * the split is large enough but ``batch_size`` (labelled) or ``unlabelled_batch_size`` is
      below the number of processes: the message says to raise that option.
    """
    n = world_size()
    for k, (dataset, stream) in enumerate(sources):
        if stream.bs >= n:
            continue
        split = getattr(dataset, "split", None) or ("labelled" if k == 0 else "unlabelled")
        option = "batch_size" if k == 0 else "unlabelled_batch_size"
        if stream.n >= n:  # the split has enough scenes: the batch size is what limits the step
            raise ValueError(
                f"{option}={stream.bs} gives {stream.bs} {split} scene(s) a step, fewer than the "
                f"{n} processes that share it; use {option} >= {n} (ideally a multiple of {n}), "
                f"or fewer processes")
        ratio = getattr(dataset, "label_ratio", None)
        at = f" at label_ratio={ratio}" if ratio is not None and split != "val" else ""
        synthetic = (getattr(dataset, "meta", None) or {}).get("name") == "synthetic"
        if split == "labelled":
            fix = "raise label_ratio or synthetic_scenes" if synthetic else "raise label_ratio"
        elif split == "unlabelled":
            fix = ("lower label_ratio or raise synthetic_scenes" if synthetic
                   else "lower label_ratio")
        else:
            fix = "raise synthetic_scenes" if synthetic else "use a larger dataset"
        if stream.bs < stream.n:  # the batch size is below the process count as well
            fix += f" (and set {option} >= {n})"
        scenes = "scene" if stream.n == 1 else "scenes"
        processes = "1 process" if stream.n == 1 else f"{stream.n} processes"
        raise ValueError(
            f"the {split} split has {stream.n} {scenes}{at}: {n} processes need at least {n} "
            f"{split} scenes a step (one each); {fix}, or use at most {processes} "
            f"(torchrun --nproc_per_node={stream.n})")
