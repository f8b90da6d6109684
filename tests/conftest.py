import os

import pytest
import torch

os.environ.setdefault("S4S_QUIET", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def gmm():
    from s4s_export.gmm import digits_gmm

    return digits_gmm()
