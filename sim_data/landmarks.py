"""The synthetic city's landmark map: signal heads, sign plates, lamp posts and utility poles as
OpenStreetMap-tagged points (`localization.landmarks`; docs/landmarks.md), what ``streetloc sim
--export-map`` writes.

Positions and sizes are the renderer's own (a signal head's housing, a sign's plate), so the map is exact:
``streetloc:position_std_m`` 0.05 m. Sign kinds map to US MUTCD codes (``traffic_sign=US:R2-1``) as an
OSM mapper in Los Angeles would tag them.
"""

from __future__ import annotations

from localization.geodesy import GeoOrigin, LocalFrame
from localization.landmarks import (
    STREET_LAMP,
    TRAFFIC_SIGN,
    TRAFFIC_SIGNALS,
    UTILITY_POLE,
    Landmark,
    LandmarkMap,
    landmark,
)

from . import textures as T
from .city import NS, Box, City

MAP_POSITION_STD_M = 0.05  # the renderer's own positions
SIGN_CODES = {"speed": "US:R2-1", "oneway": "US:R6-1", "noparking": "US:R7-1", "street": "US:D3-1",
              "crossing": "US:W11-2", "bus": "US:R7-107", "noleft": "US:R3-2"}


def _round(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def city_landmarks(city: City, origin: GeoOrigin) -> LandmarkMap:
    """Every landmark of ``city`` with lat/lon through ``origin`` (the drive's geo origin)."""
    frame = LocalFrame(origin)
    rows: list[tuple[str, str, float, float, dict, float, float, float]] = []  # id, kind, e, n, tags, w, h, bottom
    for head in city.signals:
        b = head.box
        i, j = head.node
        travel = (b.heading_deg - 180.0) % 360.0  # the housing faces the traffic it controls
        mount = "mast" if b.base_m > 4.0 else "post"
        tags = {"highway": "traffic_signals", "direction": _round(travel),
                "traffic_signals:mount": mount,
                "streetloc:street": (city.avenues[i] if head.axis == NS else city.streets[j]).name}
        rows.append((f"signal/{i}-{j}/{_round(travel)}/{mount}", TRAFFIC_SIGNALS, b.east_m, b.north_m, tags,
                     T.TRAFFIC_LIGHT_W_M, b.height_m, b.base_m))
    for prop in city.props:
        kind = city.landmark_kinds.get(prop.instance_id)
        if kind is None:
            continue
        if kind.startswith("sign:") and isinstance(prop, Box):
            sign = kind.partition(":")[2]
            tags = {"traffic_sign": SIGN_CODES.get(sign, sign), "streetloc:sign_kind": sign,
                    "direction": _round((prop.heading_deg - 180.0) % 360.0)}
            rows.append((f"sign/{prop.instance_id}", TRAFFIC_SIGN, prop.east_m, prop.north_m, tags, prop.width_m,
                         prop.height_m, prop.base_m))
        elif kind == STREET_LAMP:
            rows.append((f"lamp/{prop.instance_id}", STREET_LAMP, prop.east_m, prop.north_m,
                         {"highway": "street_lamp"}, 0.16, prop.height_m, 0.0))
        elif kind == UTILITY_POLE:
            rows.append((f"pole/{prop.instance_id}", UTILITY_POLE, prop.east_m, prop.north_m,
                         {"man_made": "utility_pole"}, 0.28, prop.height_m, 0.0))
    lat, lon, _ = frame.to_geodetic([r[2] for r in rows], [r[3] for r in rows])
    out: list[Landmark] = []
    for k, (fid, kind, _, _, tags, width, height, bottom) in enumerate(rows):
        full = {**tags, "height": _round(bottom + height), "min_height": _round(bottom),
                "streetloc:width_m": _round(width), "streetloc:height_m": _round(height),
                "streetloc:position_std_m": _round(MAP_POSITION_STD_M)}
        out.append(landmark(fid, kind, float(lat[k]), float(lon[k]), tags=full, width_m=width, height_m=height,
                            bottom_m=bottom, position_std_m=MAP_POSITION_STD_M))
    return LandmarkMap(out, f"sim_data city_seed={city.seed} blocks={city.blocks_east}x{city.blocks_north}")


__all__ = ["TRAFFIC_SIGN", "city_landmarks"]
