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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from fercore.errors import ConfigError
from fercore.training.progress import TrainResult
from fercore.training.trainer import TrainJob

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


def train_in_processes(job: TrainJob, processes: int) -> TrainResult:
    """Trains ``job.model`` in place, in ``processes`` DDP workers when more than 1 (else in this process).

    Returns:
        The :class:`fercore.training.progress.TrainResult` (rank 0's).

    Raises:
        ConfigError: when ``job.cfg.batch_size`` does not split evenly over the processes.
    """
    if processes <= 1:
        return job.run()
    batch_size = job.cfg.batch_size
    if batch_size % processes:
        raise ConfigError(f"batch_size {batch_size} does not split over {processes} DDP processes: use a "
                          f"multiple of {processes} (each process trains on batch_size / processes rows per step)")
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= processes else "gloo"
    logger.info("DDP: %d processes, backend %s, %d rows per process and step", processes, backend,
                batch_size // processes)
    with tempfile.TemporaryDirectory(prefix="fer-ddp-") as tmp:
        out = Path(tmp) / "rank0.pt"
        # by value through the pipe: torch.multiprocessing would share the tensors through /dev/shm (64 MB
        # in a default Kubernetes pod), and every worker needs weights of its own anyway
        job_bytes = pickle.dumps(replace(job, model=job.model.cpu()))
        torch.multiprocessing.spawn(_worker, args=(processes, backend, _free_port(), job_bytes, str(out)),
                                    nprocs=processes, join=True)
        state = torch.load(out, weights_only=True)
    job.model.load_state_dict(state["model"])
    if hasattr(job.model, "fer_spec"):
        job.model.fer_spec.update(state["fer_spec"])
    job.model.eval()
    return TrainResult(**state["result"])


def _worker(rank: int, world: int, backend: str, port: int, job_bytes: bytes, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    else:  # CPU workers share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, rank=rank, world_size=world)
    job: TrainJob = pickle.loads(job_bytes)  # the parent's own model, in this step
    if rank > 0:
        job.on_epoch_end = None  # rank 0 reports
    try:
        trainer = job.trainer()
        result = trainer.fit(job.dataset, job.plan)
        if rank == 0:
            spec: dict[str, Any] = dict(getattr(trainer.model, "fer_spec", {}))
            state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
            torch.save({"model": state, "result": result.to_dict(), "fer_spec": spec}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()
