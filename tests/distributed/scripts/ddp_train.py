"""A plain PyTorch DDP training script, launched by torchrun in tests/distributed/test_torchrun.py.

Environment: FAIL_RANK (a rank that raises at step 3), LOG_ALL_RANKS, CHECKPOINT (a folder);
with system metrics on, rank 0 waits for its first sample before it ends.
Every rank also logs `rank_loss` by hand, as a user would on every rank, and saves a file of
its own at step 2.
"""

import os

import autolog

autolog.autolog(log_all_ranks=os.environ.get("LOG_ALL_RANKS") == "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(4, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(32, 4), torch.randn(32, 1)
print(f"rank {rank} loop wrapped: {hasattr(torch.Tensor.backward, '__wrapped__')}", flush=True)
for step in range(10):
    if os.environ.get("FAIL_RANK") == str(rank) and step == 3:
        raise RuntimeError(f"rank {rank} failed at step {step}")
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    autolog.log_metric("rank_loss", float(loss), step=step)
    if step == 2:  # every rank saves a file of its own: only rank 0's is the job's checkpoint
        torch.save(model.module.state_dict(), os.path.join(os.environ["CHECKPOINT"], f"model-rank{rank}.pt"))
if rank == 0:
    torch.save(model.module.state_dict(), os.path.join(os.environ["CHECKPOINT"], "model.pt"))
    if os.environ.get("AUTOLOG_LOG_SYSTEM_METRICS") == "true":
        from autolog.provenance.capture import sampler

        sampler().wait_for_samples(autolog.active_run().run_id, 1, 120)
dist.barrier()
dist.destroy_process_group()
