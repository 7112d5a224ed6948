"""The moving part of a frame: vehicles, bicyclists, pedestrians and lit signal heads as render objects."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from perception import classes as C

from .camera import CameraPose
from .city import Billboard, Box, City
from .traffic import Pedestrians, Traffic, Vehicle

VIEW_DISTANCE_M = 170.0  # moving things beyond this are not handed to the renderer


def _side_view(heading_deg: float, e: float, n: float, pose: CameraPose) -> tuple[bool, bool]:
    """(seen from the side?, moving to the image's right?) for something at (e, n) heading ``heading_deg``."""
    h = math.radians(heading_deg)
    ve, vn = math.sin(h), math.cos(h)
    le, ln = e - pose.east_m, n - pose.north_m
    dist = math.hypot(le, ln) or 1.0
    across = abs(ve * ln - vn * le) / dist  # |sin| of the angle between motion and line of sight
    r = pose.right_en
    return across > 0.5, ve * r[0] + vn * r[1] > 0


class Scene:
    """Builds the render objects of everything that moves, for one time and camera pose."""

    def __init__(self, city: City, traffic: Traffic, pedestrians: Pedestrians, ego: Vehicle | None) -> None:
        self.city = city
        self.traffic = traffic
        self.pedestrians = pedestrians
        self.ego = ego
        self._sig_e = np.array([s.box.east_m for s in city.signals])
        self._sig_n = np.array([s.box.north_m for s in city.signals])

    def objects(self, pose: CameraPose, t_s: float) -> list[Billboard | Box]:
        """Render objects near ``pose`` at time ``t_s`` (seconds of the signal clock)."""
        out: list[Billboard | Box] = []
        for v in self.traffic.vehicles:
            if v is self.ego:
                continue
            e, n, hdg = v.path.pose_at(v.s_m)
            if math.hypot(e - pose.east_m, n - pose.north_m) > VIEW_DISTANCE_M:
                continue
            if v.kind == "bike":
                out.append(self._bike(v, e, n, hdg, pose))
            else:
                model, faces = self.city.car_pool[v.look]
                out.append(Box(e, n, hdg, model.length_m, model.width_m, 0.0, model.height_m,
                               (faces.front, faces.rear, faces.left, faces.right), 20.0, C.CAR, v.instance_id))
        out.extend(self._people(pose, t_s))
        out.extend(self.signals(pose, t_s))
        return out

    def _bike(self, v: Vehicle, e: float, n: float, hdg: float, pose: CameraPose) -> Billboard:
        sprites = self.city.bikes[v.look]
        side, to_right = _side_view(hdg, e, n, pose)
        view = ("side_right" if to_right else "side_left") if side else "end"
        frames = sprites.frames[view]
        frame = frames[int(v.distance_m / 2.2 * len(frames)) % len(frames)]
        return Billboard(e, n, 0.0, sprites.width_m[view], 1.75, frame, C.BICYCLIST, v.instance_id)

    def _people(self, pose: CameraPose, t_s: float) -> list[Billboard]:
        p = self.pedestrians
        if len(p) == 0:
            return []
        e, n, hdg, phase = p.state(t_s)
        near = np.flatnonzero(np.hypot(e - pose.east_m, n - pose.north_m) < VIEW_DISTANCE_M)
        out = []
        for k in near:
            look = self.city.people[int(p.look[k])]
            if p.speed_mps[k] == 0:
                view, frame_idx = "front", 0
            else:
                side, to_right = _side_view(float(hdg[k]), float(e[k]), float(n[k]), pose)
                view = ("side_right" if to_right else "side_left") if side else "front"
                frame_idx = int(phase[k] * len(look.frames[view]))
            frames = look.frames[view]
            out.append(Billboard(float(e[k]), float(n[k]), 0.0, 0.8, look.height_m, frames[frame_idx % len(frames)],
                                 C.PEDESTRIAN, int(p.instance_id[k])))
        return out

    def signals(self, pose: CameraPose, t_s: float) -> list[Box]:
        if len(self._sig_e) == 0:
            return []
        near = np.flatnonzero(np.hypot(self._sig_e - pose.east_m, self._sig_n - pose.north_m) < VIEW_DISTANCE_M)
        out = []
        for k in near:
            head = self.city.signals[k]
            state = self.city.signal_state(head.node, head.axis, t_s)
            faces = (self.city.signal_textures[state], *head.box.faces[1:])
            out.append(replace(head.box, faces=faces))
        return out
