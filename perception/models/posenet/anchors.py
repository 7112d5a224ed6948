"""PoseNet's anchor points: k-means of the training positions (Saha et al., BMVC 2018)."""

from __future__ import annotations

import numpy as np


def fit_anchors(points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 30) -> tuple[np.ndarray, float]:
    """k-means of positions [N, 2] -> (anchors [k, 2], their median nearest-neighbour spacing).

    Seeded k-means++ then Lloyd iterations; fewer distinct points than k repeat anchors (harmless).
    """
    rng = np.random.default_rng(seed)
    pts = np.asarray(points, np.float64)
    k = int(k)
    centres = [pts[rng.integers(len(pts))]]
    d2 = ((pts - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        i = int(rng.integers(len(pts))) if total <= 0 else int(rng.choice(len(pts), p=d2 / total))
        centres.append(pts[i])
        d2 = np.minimum(d2, ((pts - pts[i]) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(iterations):
        assign = ((pts[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        for j in range(k):
            members = pts[assign == j]
            if len(members):
                c[j] = members.mean(0)
    if k > 1:
        nn_d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(2) + np.eye(k) * 1e18).min(1)
        spacing = float(np.median(nn_d[nn_d < 1e9])) if np.any(nn_d < 1e9) else 1.0
    else:
        spacing = float(np.sqrt(((pts - c[0]) ** 2).sum(1).mean())) or 1.0
    return c, max(spacing, 1e-3)

