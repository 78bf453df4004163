"""What the training loop asks of the process group: its rank, and floats shared between ranks.

Outside a process group (one process) the loop never calls the collectives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1



def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")



def broadcast_floats(values: list[float]) -> list[float]:
    """Rank 0's ``values`` on every rank (the others pass placeholders of the same length)."""
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.broadcast(t, 0)
    return t.tolist()



def sum_floats(values: list[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks."""
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return t.tolist()
