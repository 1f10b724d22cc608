"""Test session set-up."""

import torch

# Two pytest-xdist workers share two cores: intra-op threads would oversubscribe them and slow every
# torch op by orders of magnitude. One thread per worker.
torch.set_num_threads(1)
