"""The synthetic city: a deterministic, seeded generator of street drives with full ground truth.

A procedural city (``city``) anchored at a real geo origin, drives along named routes through it
(``routes``), traffic and pedestrians (``traffic``), a pure-numpy 2.5D renderer (``render``) that gives
every frame its label mask and boxes, and the drive writer (``drive``) that stores them in the
streetloc drive format. ``streetloc sim`` is the command line; see sim_data/README.md.
"""

from pathlib import Path

from .camera import CameraPose, PinholeCamera
from .city import City, generate_city
from .drive import SimConfig, SimDrive, SimFrame, Simulation, write_drive
from .lighting import Lighting, lighting_for
from .preview import PreviewSampler, contact_sheet, write_preview
from .render import Renderer, RenderResult
from .routes import ROUTES, RoutePlan, plan_route

# The small drives shipped in sim_data/drives (regenerate with `python -m sim_data.make_drives`): one
# 2 x 1 block city; the training drive covers it, the test drive revisits its streets the other way.
DRIVES_DIR = Path(__file__).resolve().parent / "drives"
DEFAULT_TRAIN_DRIVE = DRIVES_DIR / "train_small.mcap"
DEFAULT_TEST_DRIVE = DRIVES_DIR / "test_small.mcap"
# The demo drive is in the default city (3 x 2 blocks, city seed 0), where the default PoseNet checkpoint
# was trained: a stretch of the held-out test_loop route (never trained on).
DEFAULT_DEMO_DRIVE = DRIVES_DIR / "demo_city.mcap"

__all__ = [
    "DEFAULT_DEMO_DRIVE",
    "DEFAULT_TEST_DRIVE",
    "DEFAULT_TRAIN_DRIVE",
    "DRIVES_DIR",
    "ROUTES",
    "CameraPose",
    "City",
    "Lighting",
    "PinholeCamera",
    "PreviewSampler",
    "RenderResult",
    "Renderer",
    "RoutePlan",
    "SimConfig",
    "SimDrive",
    "SimFrame",
    "Simulation",
    "contact_sheet",
    "generate_city",
    "lighting_for",
    "plan_route",
    "write_drive",
    "write_preview",
]
