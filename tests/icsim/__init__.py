"""IC replica emulator for tests and demos (see tests/icsim/sim.py)."""

from tests.icsim.sim import IcSim

__all__ = ["IcSim"]
