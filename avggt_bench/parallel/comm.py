"""Explicit collectives over the frame blocks, each counting the bytes its rank receives.

Counting convention (the cost model, `avggt_bench.parallel.cost`, uses the same): the payload this
rank receives from the other ranks. A ring step: the block received. An all-gather: the other
ranks' blocks as sent (padded to the largest block, since gloo and NCCL all-gathers take equal
sizes). An all-reduce: the other ranks' contributions, (R - 1) x the tensor; NCCL's ring
all-reduce moves about 2(R - 1)/R x the tensor per rank, so for all-reduce the count is an upper
bound of the link traffic. Only the small mean-fill sums of SGA are all-reduced.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist


class CommLog:
    """Bytes received by this rank, per label (e.g. `global 3`, `camera_head`) and per operation."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.label = "other"
        self.bytes: dict[str, int] = defaultdict(int)
        self.ops: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    @contextlib.contextmanager
    def under(self, label: str) -> Iterator[None]:
        """Count the collectives inside the block under `label`."""
        before, self.label = self.label, label
        try:
            yield
        finally:
            self.label = before

    def add(self, op: str, nbytes: int) -> None:
        self.bytes[self.label] += int(nbytes)
        self.ops[self.label][op] += int(nbytes)

    def reset(self) -> None:
        self.bytes.clear()
        self.ops.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": dict(self.bytes),
            "ops": {k: dict(v) for k, v in self.ops.items()},
        }


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def all_gather_blocks(
    t: torch.Tensor, counts: Sequence[int], rank: int, dim: int, log: CommLog, group: Any = None
) -> torch.Tensor:
    """Concatenate every rank's block along `dim` (rank order); block r has `counts[r]` entries.

    Blocks are padded to the largest count for the collective and trimmed after.
    """
    world = len(counts)
    most = max(counts)
    t = t.contiguous()
    if t.shape[dim] != counts[rank]:
        raise ValueError(
            f"rank {rank} block has {t.shape[dim]} entries along dim {dim}, "
            f"the split says {counts[rank]}"
        )
    pad_shape = list(t.shape)
    pad_shape[dim] = most - counts[rank]
    send = torch.cat((t, t.new_zeros(pad_shape)), dim=dim) if pad_shape[dim] else t
    parts = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(parts, send, group=group)
    log.add("all_gather", (world - 1) * nbytes(send))
    return torch.cat([p.narrow(dim, 0, c) for p, c in zip(parts, counts)], dim=dim)


def all_gather_blocks_to_host(
    t: torch.Tensor,
    counts: Sequence[int],
    rank: int,
    log: CommLog,
    group: Any = None,
    chunk_bytes: int = 1 << 28,
) -> torch.Tensor:
    """`all_gather_blocks` along dim 1 into a CPU tensor, a few frames at a time, so the device
    never holds more than about `chunk_bytes` x R of it (the full-resolution outputs of thousands
    of views do not fit beside the model). Same bytes as one all-gather: each round pads to its
    largest piece, and the rounds' sizes add up to the largest block."""
    world, most = len(counts), max(counts)
    bounds = [0]
    for c in counts:
        bounds.append(bounds[-1] + c)
    frame_bytes = max(1, t[:, :1].numel() * t.element_size())
    step = max(1, chunk_bytes // (frame_bytes * world))
    shape = list(t.shape)
    shape[1] = bounds[-1]
    out = torch.empty(shape, dtype=t.dtype)
    for off in range(0, most, step):
        n = min(step, most - off)
        mine = t[:, off : off + max(0, min(n, counts[rank] - off))]
        pad = list(mine.shape)
        pad[1] = n - mine.shape[1]
        piece = torch.cat((mine, mine.new_zeros(pad)), dim=1) if pad[1] else mine.contiguous()
        parts = [torch.empty_like(piece) for _ in range(world)]
        dist.all_gather(parts, piece, group=group)
        log.add("all_gather", (world - 1) * nbytes(piece))
        for r, part in enumerate(parts):
            valid = max(0, min(n, counts[r] - off))
            out[:, bounds[r] + off : bounds[r] + off + valid] = part[:, :valid].cpu()
    return out


def all_reduce_sum(t: torch.Tensor, log: CommLog, group: Any = None) -> torch.Tensor:
    """Sum of `t` over the ranks (a new tensor)."""
    out = t.contiguous().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    log.add("all_reduce", (log.world - 1) * nbytes(out))
    return out


class RingExchange:
    """One step of a ring: send a block to rank + 1, receive one from rank - 1, asynchronously
    (the caller computes on the block it holds meanwhile and calls `wait`)."""

    def __init__(
        self,
        send: torch.Tensor,
        recv_shape: Sequence[int],
        rank: int,
        world: int,
        log: CommLog,
        group: Any = None,
    ) -> None:
        self.recv = send.new_empty(tuple(recv_shape))
        nxt, prev = (rank + 1) % world, (rank - 1) % world
        if group is not None:
            nxt = dist.get_global_rank(group, nxt)
            prev = dist.get_global_rank(group, prev)
        ops = [
            dist.P2POp(dist.isend, send.contiguous(), nxt, group),
            dist.P2POp(dist.irecv, self.recv, prev, group),
        ]
        self.requests = dist.batch_isend_irecv(ops)
        log.add("ring", nbytes(self.recv))

    def wait(self) -> torch.Tensor:
        for req in self.requests:
            req.wait()
        return self.recv
