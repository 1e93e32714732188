"""Shared pytest set-up.

The models under test are tiny: one CPU thread is as fast as two on them, and
it keeps the suite's speed steady when something else runs on the machine
(with several threads, torch's workers wait on each other under load, and a
2-second test can take a minute).
"""

import torch

torch.set_num_threads(1)
