"""drivestack: autonomous-driving perception and control in one stack, run in a batched PyTorch simulator.

Subpackages (see docs/architecture.md): `drivestack.common` (geometry, nuScenes access, run artifacts),
`drivestack.sim`, `drivestack.control`, `drivestack.perception`, `drivestack.tracking`,
`drivestack.planning`, and the joining code here (`cli`, `bench`, `report`, `pipeline`).

`import drivestack` is cheap (no torch) and registers the Gymnasium ids `drivestack/Highway-v0` and
`drivestack/Merge-v0`, so `gym.make("drivestack:drivestack/Highway-v0")` works with no other import.
"""

from drivestack.sim.registration import ENV_IDS, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["ENV_IDS", "__version__", "register_envs"]
