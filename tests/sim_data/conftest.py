"""Small cities and renderers shared by the sim_data tests (built once per session: ~1 s)."""

from __future__ import annotations

import dataclasses

import pytest

from sim_data.camera import PinholeCamera
from sim_data.city import City, generate_city
from sim_data.lighting import lighting_for
from sim_data.render import Renderer


@pytest.fixture(scope="session")
def small_city() -> City:
    """A 2 x 1 block city: every kind of street furniture, a fraction of the default's size."""
    return generate_city(0, 2, 1)


@pytest.fixture(scope="session")
def bare_city(small_city: City) -> City:
    """The same streets and buildings with no props or signals: nothing stands between camera and walls."""
    return dataclasses.replace(small_city, props=[], signals=[])


@pytest.fixture(scope="session")
def camera() -> PinholeCamera:
    return PinholeCamera.from_hfov(160, 120, 70.0)


@pytest.fixture(scope="session")
def bare_renderer(bare_city: City, camera: PinholeCamera) -> Renderer:
    return Renderer(bare_city, camera, lighting_for(13.0))


@pytest.fixture(scope="session")
def renderer(small_city: City, camera: PinholeCamera) -> Renderer:
    return Renderer(small_city, camera, lighting_for(13.0))
