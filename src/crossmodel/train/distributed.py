"""Training on several processes (`accelerate launch`, torchrun): who this process is, how a micro-batch is split,
how the per-position statistics of the whole micro-batch are gathered, and where the frozen template lives.

The design keeps a run's numbers independent of the process count. Every process collates the *whole* micro-batch
(same padding as one process), keeps its contiguous block of rows, and runs template and delta on it; the
per-position statistics the losses read (`CombinedStats.logprob()`, `kl()` ...) are then gathered in row order, so
every process evaluates the unchanged loss function on exactly the statistics a single process would see — token
means, sequence means and retain terms are normalised over the global micro-batch, whatever the loss. The gradient
of that loss flows into each process's own rows only; summing the delta's gradients over processes (one
all-reduce per optimizer step, after gradient accumulation) gives the single-process gradient. The delta (5-110M
parameters) is always replicated; the template is replicated, or sharded with FSDP2 (its decoder layers) or
DeepSpeed ZeRO-3 as TRL does for a frozen reference model (`trl/models/utils.py`: prepare_fsdp, prepare_deepspeed).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from crossmodel.train.combined import CombinedStats, loss_positions
from crossmodel.train.templates import IGNORE_INDEX

SHARDINGS = ("auto", "replicate", "fsdp", "zero3")  # TrainConfig.template_shard


def row_block(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Process `rank`'s contiguous block [start, end) of a micro-batch of n rows: the first n % world_size
    processes take one row more, and a process gets none when n < world_size."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@dataclass(frozen=True)
class Processes:
    """This process's place in a run: rank, process count, device, and how the template is placed."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    template_shard: str = "replicate"  # replicate | fsdp | zero3 (resolved, never "auto")
    zero3_config: dict | None = None  # the DeepSpeed config of a zero3 template (from accelerate's plugin)
    mixed_precision: str = "no"  # accelerate's setting; the delta trains in float32 whatever it says

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def sharded_template(self) -> bool:
        """The template is split over the processes (FSDP or ZeRO-3), so its forward needs all of them."""
        return self.distributed and self.template_shard != "replicate"

    def barrier(self) -> None:
        """Wait until every process gets here (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the main process first, then on the others (e.g. a download or a cache build)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def rows(self, n: int) -> tuple[int, int]:
        """This process's block [start, end) of a micro-batch of n rows (`row_block`)."""
        return row_block(n, self.rank, self.world_size)

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the processes (one all-reduce of a flat buffer; a parameter that
        got no gradient here counts as zero)."""
        if not self.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for p, part in zip(parameters, torch.split(flat, [g.numel() for g in grads])):
            p.grad = part.view_as(p).clone()

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy the main process's parameters and buffers to every process (as DDP does when it wraps a model)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)


SINGLE = Processes()


class _GatherRows(torch.autograd.Function):
    """All-gather per-position values of different lengths per process, in rank order. Every process evaluates
    the same loss on the gathered values, so the gradient reaching this process's own block is the local slice
    of the (identical) upstream gradient: no communication in backward."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.start, ctx.size = sum(sizes[:rank]), sizes[rank]
        width = max(sizes)
        padded = local.new_zeros(width)
        padded[:local.numel()] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])  # (sum(sizes),)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[ctx.start:ctx.start + ctx.size], None, None


class NoRows:
    """The statistics of a process that holds no rows of a micro-batch: every statistic is empty."""

    def __init__(self, device: str):
        self.device = device

    def __getattr__(self, name: str) -> Callable[..., torch.Tensor]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: torch.zeros(0, device=self.device)


class GatheredStats:
    """The `CombinedStats` of a whole micro-batch, assembled from every process's block of rows.

    Any per-position statistic of `CombinedStats` (`logprob()`, `kl()`, `adjusted_ce(γ)`, `template_logprob()`
    and whatever is added there later) is computed on this process's rows and all-gathered in row order;
    `per_sequence`, `seq`, `targets` and `n_seq` describe the whole micro-batch, so a loss cannot tell this view
    from the single-process one.
    """

    def __init__(self, local: CombinedStats | NoRows, labels: torch.Tensor, processes: Processes):
        self.local, self.processes = local, processes
        self.seq, _, self.targets = loss_positions(labels)  # the whole micro-batch: (N,), (N,)
        self.n_seq = labels.shape[0]
        counts = (labels[:, 1:] != IGNORE_INDEX).sum(1).tolist()  # loss positions per row
        self.sizes = [sum(counts[slice(*row_block(len(counts), r, processes.world_size))])
                      for r in range(processes.world_size)]  # loss positions per process
        self._memo: dict[tuple, torch.Tensor] = {}

    @property
    def n(self) -> int:
        """Loss positions of the whole micro-batch."""
        return int(self.targets.numel())

    def per_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-position `values` over each sequence of the micro-batch, (n_seq,)."""
        return values.new_zeros(self.n_seq).index_add(0, self.seq.to(values.device), values)

    def __getattr__(self, name: str) -> Callable[..., torch.Tensor]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self.local, name)

        def gathered(*args: Any) -> torch.Tensor:
            key = (name, *args)
            if key not in self._memo:
                local = method(*args).float()  # (n_local,)
                self._memo[key] = _GatherRows.apply(local, self.sizes, self.processes.rank)  # (N,)
            return self._memo[key]

        return gathered


def _fsdp_template(template: torch.nn.Module) -> torch.nn.Module:
    """Shard the template's decoder layers (the modules HF declares unsplittable, `_no_split_modules`) with
    FSDP2; its embeddings, final norm and output head stay replicated, so the chunked loss can call the head on
    selected rows. The trunk is the FSDP root, so each layer is gathered for its forward and freed after it."""
    from torch.distributed.fsdp import fully_shard

    names = set(getattr(template, "_no_split_modules", None) or [])
    layers = [m for m in template.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"template_shard='fsdp': {type(template).__name__} declares no decoder-layer classes "
                         "(_no_split_modules); use --template-shard replicate")
    for layer in layers:
        fully_shard(layer)
    trunk = template.base_model
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    fully_shard(trunk, ignored_params={p for p in trunk.parameters() if id(p) not in in_layers})
    return template


def _zero3_template(template: torch.nn.Module, config: dict | None) -> torch.nn.Module:
    """Partition the template with DeepSpeed ZeRO-3 for inference, as TRL's prepare_deepspeed does for a frozen
    reference model (no optimizer; parameters gathered module by module in forward). Not run on this project's
    CPU machines (DeepSpeed needs GPUs)."""
    try:
        import deepspeed
    except ImportError:
        raise ValueError("template_shard='zero3' needs DeepSpeed: pip install deepspeed (or use --template-shard "
                         "fsdp)") from None
    def settled(entries: dict) -> dict:  # accelerate leaves "auto" for what its own prepare() would fill in
        return {k: settled(v) if isinstance(v, dict) else v for k, v in entries.items() if v != "auto"}

    config = {**settled(config or {}), "train_micro_batch_size_per_gpu": 1}
    config["zero_optimization"] = {**config.get("zero_optimization", {}), "stage": 3}
    engine, *_ = deepspeed.initialize(model=template, config=config)
    engine.eval()
    return engine.module  # hooks on every submodule gather its parameters, so base_model / head calls work


def place_template(template: torch.nn.Module, processes: Processes) -> torch.nn.Module:
    """The frozen template as the loop uses it: in eval mode without gradients, replicated or sharded."""
    template.eval().requires_grad_(False)
    if not processes.sharded_template:
        return template
    if processes.template_shard == "fsdp":
        return _fsdp_template(template)
    return _zero3_template(template, processes.zero3_config)


def _accelerate_sharding(state: Any) -> tuple[str, dict | None]:
    """What accelerate's launch configuration asks of a large model: FSDP → fsdp, DeepSpeed ZeRO-3 → zero3
    (its config), anything else → replicate."""
    from accelerate.utils import DistributedType

    if state.distributed_type == DistributedType.FSDP:
        return "fsdp", None
    plugin = getattr(state, "deepspeed_plugin", None)
    if state.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3:
        return "zero3", dict(plugin.deepspeed_config)
    return "replicate", None


def launched_processes(device: str = "cpu", template_shard: str = "auto") -> Processes:
    """This process as `accelerate launch` (or torchrun) started it, read through accelerate; one process when
    not launched. `device` "cpu" runs the processes on CPU over gloo; a GPU device ("cuda") puts each process on
    the GPU accelerate assigns it. `template_shard` "auto" follows accelerate's configuration (FSDP or ZeRO-3 shard
    the template, anything else replicates it)."""
    if template_shard not in SHARDINGS:
        raise ValueError(f"template_shard={template_shard!r}; choose one of {list(SHARDINGS)}")
    from accelerate import PartialState

    cpu = torch.device(device).type == "cpu"
    state = PartialState(cpu=cpu)
    if state.num_processes == 1:
        return Processes(device=device)
    from accelerate import Accelerator

    accelerated = Accelerator(cpu=cpu).state
    found, zero3 = _accelerate_sharding(accelerated)
    if template_shard == "zero3" and found != "zero3":
        raise ValueError("template_shard='zero3' needs an accelerate DeepSpeed config with zero_stage 3 "
                         "(docs/SCALING.md); use --template-shard fsdp or replicate")
    return Processes(rank=state.process_index, world_size=state.num_processes, device=str(state.device),
                     template_shard=found if template_shard == "auto" else template_shard, zero3_config=zero3,
                     mixed_precision=str(accelerated.mixed_precision))
