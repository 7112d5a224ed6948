"""Scene context -> how much to trust a PoseNet fix: features, the fitted model, and its fit (numpy only).

PoseNet's real error depends on what is in view: a street hidden by a bus, a frame that is mostly sky or
road, a dark one. The segmenter (``perception/segmentation``: per-class pixel fractions) and the detector
(``perception/detections``: boxes per class) describe the view; PoseNet's own fix says how sure it is (its
covariance, the weight of its top hypothesis). `ContextModel` turns those into two numbers per fix:

* ``p_outlier``: the probability that the fix is more than ``outlier_m`` (20 m) off — a logistic
  regression on the standardized features (`fit_context`: L2-penalised, Newton/IRLS);
* ``cov_scale``: for a fix that is not an outlier, the factor its covariance should have so that its
  95 % ellipse holds the truth 95 % of the time — a linear quantile regression (`fit_quantile`, the 95 %
  quantile, ridge-penalised) of ``log(d^2 / CHI2_2DOF_95)`` with ``d^2 = e' C^-1 e`` (e: the fix's error,
  C: its covariance). On the fit frames the scaled ellipses hold 95 % of the inliers (coverage-matched);
  where PoseNet's ellipses already do, the scale stays ~1. (Version 1 files fitted the *mean* of
  ``log(d^2 / 2)`` instead, which assumes ``d^2`` is chi-square with 2 dof; PoseNet's is not — a third of
  its place-recognition fixes sit almost exactly on the truth, ``d^2`` ~ 0 — so that fit shrank the
  covariance of most fixes and took the 95 % coverage of the check drives' inliers from 95 % to 83 %:
  docs/context.md. They still load, with the same meaning.)

The fusion node applies them to each fix matched by the frame's ``stamp_ns`` (``FixTrust``): the fix's
covariance times ``cov_scale / max(trust, min_trust)`` with ``trust = 1 - p_outlier``, so a fix the scene
makes doubtful pulls the estimate less and gates later (docs/context.md). The reason is the feature that
raised ``p_outlier`` most (its value, e.g. ``"sky 0.62"``), or ``"no context"`` when the frame's context
never came.

The model is a JSON file (``perception/weights/context_synthetic_city.json``), versioned, with its
features' names, the standardization, both coefficient vectors, the drives it was fitted on (with content
hashes) and the figures on the drives held out of the fit; written by ``streetloc train context``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 2  # 2: scale_intercept is the log scale's (1: of the mean log(d^2/2), see load)
EULER_GAMMA = 0.5772156649015329  # E[log X] = -gamma for X ~ exponential(1): version 1's offset
CHI2_2DOF_95 = 5.991464547107979  # 95 % quantile of chi-square with 2 dof: the 95 % ellipse's d^2
SCALE_QUANTILE = 0.95  # the scaled inlier ellipses hold the truth this often on the fit frames

# Segmenter classes whose pixel fraction is a feature (perception.classes names), and how they read.
SEG_CLASSES = (
    "sky",
    "building",
    "road",
    "sidewalk",
    "tree",
    "car",
    "pedestrian",
    "bicyclist",
    "pole",
    "fence",
    "sign",
)
# Detector classes counted and whose box area (share of the frame) is a feature.
DET_GROUPS = {"cars": ("car",), "people": ("pedestrian", "bicyclist"), "signs": ("sign", "traffic_light")}
FIX_FEATURES = ("log_std_m", "top_weight")
FEATURES = (
    tuple(f"seg_{c}" for c in SEG_CLASSES)
    + tuple(f"det_{g}_count" for g in DET_GROUPS)
    + tuple(f"det_{g}_area" for g in DET_GROUPS)
    + FIX_FEATURES
)
# How a feature is named in a fix's trust reason, e.g. "sky 0.62", "cars 3", "cars area 0.31".
_REASON_NAMES = {
    **{f"seg_{c}": c for c in SEG_CLASSES},
    **{f"det_{g}_count": g for g in DET_GROUPS},
    **{f"det_{g}_area": f"{g} area" for g in DET_GROUPS},
    "log_std_m": "fix std",
    "top_weight": "top weight",
}
NO_CONTEXT = "no context"


def segmentation_features(class_names: Sequence[str], class_fractions: Sequence[float]) -> dict[str, float]:
    """The segmenter's share of the frame's pixels per class in `SEG_CLASSES` (0 for a class the table
    lacks). ``class_names``/``class_fractions``: a ``Segmentation`` message's lists, same order."""
    share = {str(n): float(f) for n, f in zip(class_names, class_fractions, strict=False)}
    return {f"seg_{c}": share.get(c, 0.0) for c in SEG_CLASSES}


def detection_features(
    class_names: Sequence[str],
    class_ids: np.ndarray,
    boxes_xyxy_px: np.ndarray,
    width_px: int,
    height_px: int,
) -> dict[str, float]:
    """Per detector group of `DET_GROUPS`: the number of boxes and their summed area as a share of the
    frame (clipped to 1; overlapping boxes count twice). ``class_ids`` int [N] index ``class_names``;
    ``boxes_xyxy_px`` float [N, 4] in the frame's pixels (``width_px`` x ``height_px``)."""
    names = [
        str(class_names[int(i)]) if 0 <= int(i) < len(class_names) else "" for i in np.asarray(class_ids)
    ]
    boxes = np.asarray(boxes_xyxy_px, float).reshape(-1, 4)
    if len(boxes) != len(names):
        raise ValueError(f"detections: {len(boxes)} boxes but {len(names)} class ids")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    frame_px = float(max(1, width_px) * max(1, height_px))
    out = {}
    for group, members in DET_GROUPS.items():
        sel = np.array([n in members for n in names], bool)
        out[f"det_{group}_count"] = float(sel.sum())
        out[f"det_{group}_area"] = float(min(1.0, areas[sel].sum() / frame_px)) if sel.any() else 0.0
    return out


def fix_features(cov_enu_m2: Sequence[float] | np.ndarray, top_weight: float) -> dict[str, float]:
    """PoseNet's own confidence: log of its horizontal 1-sigma (sqrt of the mean axis variance, m) and the
    weight of its top hypothesis (1 when it sends none)."""
    cov = np.asarray(cov_enu_m2, float).reshape(2, 2)
    var = 0.5 * (cov[0, 0] + cov[1, 1])
    log_std = 0.5 * math.log(var) if math.isfinite(var) and var > 0 else 0.0
    weight = float(top_weight) if math.isfinite(top_weight) else 1.0
    return {"log_std_m": log_std, "top_weight": weight}


@dataclass(frozen=True)
class FixTrust:
    """What the context model says about one fix: ``trust`` in [0, 1] (1 - p_outlier; 1 without context),
    ``cov_scale`` (> 0) the covariance factor for an inlier, ``inflation`` the factor the fusion applies
    (``cov_scale / max(trust, min_trust)``), ``reason`` why (the feature that lowered trust most)."""

    trust: float = 1.0
    cov_scale: float = 1.0
    inflation: float = 1.0
    reason: str = NO_CONTEXT
    p_outlier: float = 0.0


@dataclass
class ContextModel:
    """The fitted relation (see the module docstring). Vectors are in the order of ``features``."""

    features: list[str]
    mean: list[float]
    std: list[float]
    outlier_coef: list[float]
    outlier_intercept: float
    scale_coef: list[float]
    scale_intercept: float  # the log scale is this + scale_coef . z
    outlier_m: float = 20.0
    min_trust: float = 0.1  # a fix is never inflated by more than 1 / min_trust for being doubtful
    scale_bounds: tuple[float, float] = (0.25, 25.0)  # cov_scale is clipped to these
    version: int = FORMAT_VERSION
    data: list[dict[str, Any]] = field(default_factory=list)  # drives fitted on: path, frames, sha256
    check: dict[str, Any] = field(default_factory=dict)  # figures on the drives held out of the fit
    recipe: dict[str, Any] = field(default_factory=dict)

    # --------------------------------------------------------------------------------------------- I/O
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ContextModel:
        """Read a model file; ValueError in one line naming the file and what is wrong."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"context model {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") not in (1, FORMAT_VERSION):
            got = raw.get("version") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"context model {path}: version {got!r}, this code reads 1 and {FORMAT_VERSION}")
        if raw["version"] == 1:  # its scale_intercept was of the mean log(d^2/2): the same model in version 2
            try:
                raw["scale_intercept"] = float(raw["scale_intercept"]) + EULER_GAMMA
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"context model {path}: scale_intercept: {exc}") from None
            raw["version"] = FORMAT_VERSION
        try:
            raw["scale_bounds"] = tuple(raw.get("scale_bounds", (0.25, 25.0)))
            model = cls(**raw)
        except TypeError as exc:
            raise ValueError(f"context model {path}: {exc}") from None
        n = len(model.features)
        unknown = sorted(set(model.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"context model {path}: unknown features {unknown}")
        for name in ("mean", "std", "outlier_coef", "scale_coef"):
            vec = np.asarray(getattr(model, name), float)
            if vec.shape != (n,) or not np.all(np.isfinite(vec)):
                raise ValueError(f"context model {path}: {name} must be {n} finite numbers")
        return model

    # -------------------------------------------------------------------------------------- evaluation
    def _z(self, features: Mapping[str, float] | np.ndarray) -> np.ndarray:
        if isinstance(features, Mapping):
            x = np.array([float(features.get(f, m)) for f, m in zip(self.features, self.mean, strict=True)])
        else:
            x = np.asarray(features, float)
        return (x - np.asarray(self.mean)) / np.asarray(self.std)

    def p_outlier(self, features: Mapping[str, float] | np.ndarray) -> np.ndarray:
        """Probability the fix is over ``outlier_m`` off; features a mapping (missing -> the mean) or
        an array [..., F]."""
        return _sigmoid(self._z(features) @ np.asarray(self.outlier_coef) + self.outlier_intercept)

    def cov_scale(self, features: Mapping[str, float] | np.ndarray) -> np.ndarray:
        """The inlier covariance factor, clipped to ``scale_bounds``; features as for `p_outlier`."""
        log_s = self._z(features) @ np.asarray(self.scale_coef) + self.scale_intercept
        return np.clip(np.exp(log_s), *self.scale_bounds)

    def assess(self, features: Mapping[str, float]) -> FixTrust:
        """The trust of one fix given its context features (`segmentation_features` |
        `detection_features` | `fix_features`)."""
        z = self._z(features)
        p = float(_sigmoid(z @ np.asarray(self.outlier_coef) + self.outlier_intercept))
        scale = float(self.cov_scale(features))
        trust = 1.0 - p
        contrib = z * np.asarray(self.outlier_coef)  # what pushed the logit up, per feature
        k = int(np.argmax(contrib))
        name = self.features[k]
        value = float(features.get(name, self.mean[k]))
        if name == "log_std_m":  # shown in metres, as PoseNet's std
            shown = f"fix std {math.exp(value):.0f} m"
        else:
            shown = (
                f"{_REASON_NAMES.get(name, name)} {value:.0f}"
                if name.endswith("_count")
                else (f"{_REASON_NAMES.get(name, name)} {value:.2f}")
            )
        reason = shown if contrib[k] > 0 else "ordinary view"
        return FixTrust(
            trust=trust,
            cov_scale=scale,
            inflation=scale / max(trust, self.min_trust),
            reason=reason,
            p_outlier=p,
        )


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, float)))


def fit_logistic(
    z: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (IRLS). z float [N, F] (standardized), y bool
    [N]. Returns (coef [F], intercept); the intercept is not penalised."""
    n, f = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    w = np.zeros(f + 1)
    pen = np.full(f + 1, l2)
    pen[-1] = 0.0
    for _ in range(iterations):
        p = _sigmoid(a @ w)
        grad = a.T @ (p - y) + pen * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(pen) + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_ridge(z: np.ndarray, t: np.ndarray, *, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge least squares t ~ z . coef + intercept (intercept not penalised)."""
    n, f = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    pen = np.full(f + 1, l2)
    pen[-1] = 0.0
    w = np.linalg.solve(a.T @ a + np.diag(pen), a.T @ t)
    return w[:-1], float(w[-1])


def fit_quantile(
    z: np.ndarray, t: np.ndarray, *, tau: float, l2: float = 1.0, iterations: int = 500
) -> tuple[np.ndarray, float]:
    """Linear quantile regression: the ``tau`` quantile of t given z, t ~ z . coef + intercept, minimising
    the pinball loss sum(rho_tau(t - fit)) + l2 / 2 |coef|^2 (intercept not penalised). z float [N, F]
    (standardized), t float [N]. By Hunter & Lange's MM (2000): each step a weighted least squares on a
    quadratic majorizer of the pinball loss, so the loss never rises. Returns (coef [F], intercept)."""
    n, f = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    pen = np.full(f + 1, 2.0 * l2)
    pen[-1] = 0.0
    w = np.zeros(f + 1)
    w[-1] = float(np.quantile(t, tau))
    eps = 1e-6 * max(1.0, float(np.ptp(t)))  # the majorizer's smoothing: |r| < eps counts as ~0
    lin = (2.0 * tau - 1.0) * a.sum(axis=0)
    for _ in range(iterations):
        v = 1.0 / (eps + np.abs(t - a @ w))
        new = np.linalg.solve((a * v[:, None]).T @ a + np.diag(pen), (a * v[:, None]).T @ t + lin)
        done = np.max(np.abs(new - w)) < 1e-7
        w = new
        if done:
            break
    return w[:-1], float(w[-1])


def fit_context(
    x: np.ndarray,
    err_m: np.ndarray,
    mahal2: np.ndarray,
    *,
    features: Sequence[str] = FEATURES,
    outlier_m: float = 20.0,
    l2: float = 1.0,
    scale_l2: float = 300.0,
) -> ContextModel:
    """Fit both parts on frames: x float [N, F] features (order ``features``), err_m float [N] the fix's
    distance from the truth (m), mahal2 float [N] its squared Mahalanobis distance under its own
    covariance. Outliers: err_m > outlier_m (logistic regression, penalty ``l2``); the scale is fitted on
    the others, so that the scaled 95 % ellipses hold 95 % of them (`fit_quantile` of
    ``log(mahal2 / CHI2_2DOF_95)``, penalty ``scale_l2`` on the standardized coefficients: 300, chosen on
    the validation folds, keeps each check drive's inlier coverage within ~1 point of PoseNet's own while
    the log-likelihood of the truth improves, docs/context.md)."""
    x = np.asarray(x, float)
    err_m = np.asarray(err_m, float)
    mahal2 = np.asarray(mahal2, float)
    ok = np.all(np.isfinite(x), axis=1) & np.isfinite(err_m) & np.isfinite(mahal2)
    x, err_m, mahal2 = x[ok], err_m[ok], mahal2[ok]
    if len(x) < 10:
        raise ValueError(f"context fit: {len(x)} usable frames, at least 10 are needed")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-9] = 1.0
    z = (x - mean) / std
    outlier = err_m > outlier_m
    coef, icpt = fit_logistic(z, outlier.astype(float), l2=l2)
    inl = ~outlier
    if inl.sum() < 5:
        raise ValueError(f"context fit: {int(inl.sum())} inlier frames, at least 5 are needed")
    t = np.log(np.maximum(mahal2[inl], 1e-9) / CHI2_2DOF_95)
    scoef, sicpt = fit_quantile(z[inl], t, tau=SCALE_QUANTILE, l2=scale_l2)
    return ContextModel(
        features=list(features),
        mean=mean.tolist(),
        std=std.tolist(),
        outlier_coef=coef.tolist(),
        outlier_intercept=icpt,
        scale_coef=scoef.tolist(),
        scale_intercept=sicpt,
        outlier_m=outlier_m,
        recipe={
            "l2": l2,
            "scale_l2": scale_l2,
            "scale_fit": f"quantile {SCALE_QUANTILE:g} of log(d2 / chi2_2dof_95)",
            "frames": int(len(x)),
            "outliers": int(outlier.sum()),
        },
    )


def score_context(
    model: ContextModel, x: np.ndarray, err_m: np.ndarray, mahal2: np.ndarray
) -> dict[str, float]:
    """How the model does on frames (best held out of its fit): the outlier part's AUC, log loss against
    a constant (the outlier rate) and its Brier score; the 95 % ellipse coverage of inliers before and
    after the scale (chi2 2 dof: d^2 < 5.991), and of all fixes with the whole inflation; the inliers'
    mean negative log-likelihood under the scaled covariance minus that under PoseNet's own
    (``inlier_nll_change``: mean of log s + d^2 / 2s - d^2 / 2; < 0: the scale is a better forecast)."""
    x = np.asarray(x, float)
    ok = np.all(np.isfinite(x), axis=1) & np.isfinite(err_m) & np.isfinite(mahal2)
    x, err_m, mahal2 = x[ok], np.asarray(err_m)[ok], np.asarray(mahal2)[ok]
    y = err_m > model.outlier_m
    p = np.clip(model.p_outlier(x), 1e-6, 1 - 1e-6)
    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    logloss = float(-np.mean(y * np.log(p) + (~y) * np.log(1 - p)))
    logloss0 = float(-np.mean(y * np.log(base) + (~y) * np.log(1 - base)))
    scale = model.cov_scale(x)
    inflation = scale / np.maximum(1 - p, model.min_trust)
    inl = ~y
    return {
        "frames": int(len(x)),
        "outlier_rate": float(y.mean()),
        "auc": _auc(p, y),
        "log_loss": logloss,
        "log_loss_constant": logloss0,
        "brier": float(np.mean((p - y) ** 2)),
        "inlier_coverage_raw": float(np.mean(mahal2[inl] < 5.991)) if inl.any() else float("nan"),
        "inlier_coverage_scaled": float(np.mean(mahal2[inl] / scale[inl] < 5.991))
        if inl.any()
        else float("nan"),
        "inlier_nll_change": float(np.mean(np.log(scale[inl]) + mahal2[inl] / (2 * scale[inl]) - mahal2[inl] / 2))
        if inl.any()
        else float("nan"),
        "coverage_raw": float(np.mean(mahal2 < 5.991)),
        "coverage_inflated": float(np.mean(mahal2 / inflation < 5.991)),
    }


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic; ties count half); NaN with one class only."""
    pos, neg = score[y], score[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    ranks[order] = _average_ranks(allv)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, len(sorted_values) + 1, dtype=float)
    i = 0
    while i < len(sorted_values):
        j = i
        while j + 1 < len(sorted_values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[i : j + 1] = 0.5 * (i + j) + 1
        i = j + 1
    return ranks
