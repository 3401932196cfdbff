"""Test-session settings: one intra-op thread. The networks in tests are tiny,
where OpenMP's thread synchronisation costs more than it gains, and on a
shared or loaded machine two spinning threads per process slow everything down
many times over."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
