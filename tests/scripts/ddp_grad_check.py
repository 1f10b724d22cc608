"""Run under ``torchrun --nproc_per_node=2``: DDP gradients of a fixed global batch split over the ranks
equal the gradients of one process on the whole batch. Exits 0 when they match to 1e-6."""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from agents.model import ModelConfig, PolicyModel
from agents.ppo import ActionEvaluator, PPOConfig, minibatch_loss
from agents.rollout import Rollout

V, S, T, N = 50, 6, 5, 8


def main() -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", V, S, T))
    g = torch.Generator().manual_seed(1)
    batch = Rollout(
        source=torch.randint(4, V, (N, S), generator=g),
        actions=torch.randint(4, V, (N, T), generator=g),
        logprobs=-3.0 + 0.1 * torch.randn(N, T, generator=g),
        values=torch.randn(N, T, generator=g),
        rewards=torch.randn(N, T, generator=g),
        mask=torch.ones(N, T, dtype=torch.bool),  # equal token counts per rank: DDP's mean of means is the mean
        scores=np.zeros(N),
        lengths=np.full(N, T),
        example_ids=np.arange(N),
    )
    advantages, returns = torch.randn(N, T, generator=g), torch.randn(N, T, generator=g)
    config = PPOConfig(num_envs=N, num_minibatches=1)
    allowed = torch.ones(V, dtype=torch.bool)

    single = ActionEvaluator(copy.deepcopy(model))
    loss, _ = minibatch_loss(single, batch, torch.arange(N), advantages, returns, config, allowed)
    loss.backward()

    ddp = DistributedDataParallel(ActionEvaluator(model))
    mine = torch.arange(rank * N // world, (rank + 1) * N // world)
    loss, _ = minibatch_loss(ddp, batch, mine, advantages, returns, config, allowed)
    loss.backward()

    diff = max(float((p.grad - q.grad).abs().max()) for p, q in zip(ddp.module.parameters(), single.parameters()))
    print(f"rank {rank}/{world}: max |grad_ddp - grad_single| = {diff:.3e}", flush=True)
    dist.destroy_process_group()
    return 0 if diff < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
