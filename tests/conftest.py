import os

os.environ.setdefault("S4S_QUIET", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it; must precede importing torch

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def gmm():
    from s4s_export.gmm import digits_gmm

    return digits_gmm()
