"""Data-parallel training in one step: one process per GPU of the node, DistributedDataParallel.

:func:`fit` spawns the workers with ``torch.multiprocessing`` (what ``torchrun`` does on one node, but
the dataset and model reach the workers as arguments instead of through a script and files). Each
worker trains on its share of every batch; DDP averages the gradients, so the weights follow the
single-process run with the same global batch. Rank 0 alone validates (and broadcasts the figures),
writes checkpoints and calls ``on_epoch_end``; the parent gets rank 0's weights and result. Turned on
by one key, ``resources.ddp_processes``.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fercore.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_processes(setting: int | str) -> int:
    """``resources.ddp_processes``: an int, or ``all_gpus`` (one per visible CUDA GPU, 1 without any)."""
    if setting == "all_gpus":
        return max(torch.cuda.device_count(), 1)
    return int(setting)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit(model: nn.Module, cfg, dataset, plan, processes: int, checkpoints=None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        on_epoch_start: Callable[[int, nn.Module], None] | None = None, teacher_probs=None):
    """Trains ``model`` in place with :class:`fercore.training.trainer.Trainer`, in ``processes`` DDP workers when > 1.

    The callbacks and ``checkpoints`` must be picklable when ``processes > 1`` (they travel to the workers).

    Returns:
        The :class:`fercore.training.trainer.TrainResult` (rank 0's).

    Raises:
        ConfigError: when ``cfg.batch_size`` does not split evenly over the processes.
    """
    from fercore.training.trainer import Trainer, TrainResult

    if processes <= 1:
        return Trainer(model, cfg, checkpoints, on_epoch_end=on_epoch_end, on_epoch_start=on_epoch_start,
                       teacher_probs=teacher_probs).fit(dataset, plan)
    if cfg.batch_size % processes:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split over {processes} DDP processes: use a "
                          f"multiple of {processes} (each process trains on batch_size / processes rows per step)")
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= processes else "gloo"
    logger.info("DDP: %d processes, backend %s, %d rows per process and step", processes, backend,
                cfg.batch_size // processes)
    with tempfile.TemporaryDirectory(prefix="fer-ddp-") as tmp:
        out = Path(tmp) / "rank0.pt"
        # by value through the pipe: torch.multiprocessing would share the tensors through /dev/shm (64 MB
        # in a default Kubernetes pod), and every worker needs weights of its own anyway
        model_bytes = pickle.dumps(model.cpu())
        args = (processes, backend, _free_port(), model_bytes, cfg, dataset, plan, checkpoints, on_epoch_end,
                on_epoch_start, teacher_probs, str(out))
        torch.multiprocessing.spawn(_worker, args=args, nprocs=processes, join=True)
        state = torch.load(out, weights_only=True)
    model.load_state_dict(state["model"])
    if hasattr(model, "fer_spec"):
        model.fer_spec.update(state["fer_spec"])
    model.eval()
    return TrainResult(**state["result"])


def _worker(rank: int, world: int, backend: str, port: int, model_bytes: bytes, cfg, dataset, plan, checkpoints,
            on_epoch_end, on_epoch_start, teacher_probs, out: str) -> None:
    from fercore.training.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    else:  # CPU workers share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, rank=rank, world_size=world)
    model = pickle.loads(model_bytes)  # the parent's own model, in this step
    try:
        trainer = Trainer(model, cfg, checkpoints, on_epoch_end=on_epoch_end if rank == 0 else None,
                          on_epoch_start=on_epoch_start, teacher_probs=teacher_probs)
        result = trainer.fit(dataset, plan)
        if rank == 0:
            spec: dict[str, Any] = dict(getattr(trainer.model, "fer_spec", {}))
            state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
            torch.save({"model": state, "result": result.to_dict(), "fer_spec": spec}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()
