"""Network architectures (EDM family) and a builder keyed by EDM's class names."""

from __future__ import annotations

from torch import nn

from ..errors import choice_error
from .dhariwal import DhariwalUNet
from .precond import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond
from .songunet import SongUNet

NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "SongUNet": SongUNet,
    "DhariwalUNet": DhariwalUNet,
    "EDMPrecond": EDMPrecond,
    "VPPrecond": VPPrecond,
    "VEPrecond": VEPrecond,
    "iDDPMPrecond": iDDPMPrecond,
}


def build_network(class_name: str, **init_kwargs) -> nn.Module:
    """Rebuild an EDM network from a pickle's `class_name` and `_init_kwargs` (random weights).

    Lists and numpy scalars in the kwargs are accepted as EDM stores them; load the weights with
    `load_state_dict(strict=True)` afterwards.
    """
    if class_name not in NETWORK_CLASSES:
        raise choice_error("network class", class_name, tuple(NETWORK_CLASSES))
    return NETWORK_CLASSES[class_name](**init_kwargs)


__all__ = ["NETWORK_CLASSES", "build_network", "DhariwalUNet", "EDMPrecond", "SongUNet", "VEPrecond",
           "VPPrecond", "iDDPMPrecond"]
