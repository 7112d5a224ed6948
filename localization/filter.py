"""The pose filter: an extended Kalman filter that fuses PoseNet fixes, wheel odometry and (optionally) GPS
into one pose with a covariance, and knows when it is lost. Pure numpy: a node wraps it later
(openpilot locationd's shape: ``handle(kind, stamp_ns, measurement)``, then ``pose(stamp_ns)``).

State (local ENU frame of `localization.geodesy`, named slices below, never bare indices)::

    x = [east_m, north_m, yaw_rad, speed_mps, yaw_rate_radps, gyro_bias_radps, speed_scale_error]

``yaw_rad`` is counter-clockwise from east (REP-103; a compass heading h is yaw = 90 deg - h), so the
motion model is the textbook one. ``gyro_bias_radps`` and ``speed_scale_error`` are the odometry's errors
(`sim_data.odometry` models them): the gyro reads ``yaw_rate + gyro_bias``, the wheels
``(1 + speed_scale_error) * speed``; fixes make both observable.

Design choices (and why):

* **EKF**, not a UKF or particle filter: the motion model is mildly nonlinear over one step (<= 0.1 s,
  see ``max_predict_step_s``), and the hard part — look-alike streets 100+ m away — is not a
  linearisation problem but a data-association one, handled by gating, hypothesis selection and
  relocalisation below. Joseph-form updates keep P symmetric positive definite.
* **A fix with several hypotheses: a per-hypothesis Mahalanobis gate, then the gated ones combined.**
  Each hypothesis i gives y_i, S_i = H P H' + R_i, d_i^2 = y_i' S_i^-1 y_i and log-likelihood
  l_i = log w_i - d_i^2 / 2 - log det S_i / 2. Those with d_i^2 over the gate are dropped (a look-alike
  street 100 m away). The rest are combined by ``mixture``: ``max`` (default; max-mixture, Olson &
  Agarwal 2012) updates with the best l_i alone; ``moment_match`` (probabilistic data association)
  weights them by beta_i ~ exp(l_i) and updates once with their mean and a covariance that includes their
  spread. Both keep one Gaussian (no mixture explosion), use the weights as priors when the filter is
  unsure and the geometry when it is sure, and reduce to an ordinary gated fix with one hypothesis.
  Measured on 4 drives with PoseNet's top-5 anchors (benchmarks/fusion_eval.py --hypotheses 5): max
  median 1.1 m, p95 6.2 m, 95 % ellipse coverage 80 %; moment matching 1.3 m, 6.1 m, 76 % (with the
  earlier, white-fix tuning moment matching had the smaller p95; with the decorrelation below, max is as
  good and simpler). A full Gaussian-sum / particle filter would keep several streets alive at once;
  here relocalisation (below) takes over when the one street kept is wrong.
* **PoseNet errors are not white.** The same street gives the same error for metres, and a stopped
  camera sends the same image again and again. A fix's R is inflated by
  ``fix_decorrelation_m / distance travelled since the last used fix`` (at most ``max_fix_inflation``),
  so repeats add no false certainty. Measured: 95 % ellipse coverage 45 % without, 76 % with (10 m;
  regression PoseNet). The place PoseNet's errors decorrelate within ~2 m (the spacing of its training
  views): 2 m since (validation coverage 99.1 % -> 96.7 % with ``fix_cov_scale`` 1.0).
* **Stopped wheels mean no turning** (a car does not turn in place): odometry speed under
  ``stationary_speed_mps`` adds a zero-yaw-rate update, which makes the gyro bias observable at every stop.
* **Heading** is a separate 1-dof update after the position (PoseNet's heading is often 45+ deg off when
  its position is fine; a joint 3-dof gate would throw good positions away). Innovations wrap to
  [-pi, pi), so 359 deg vs 1 deg is a 2 deg error.
* **Late measurements: a short history rewind.** The filter keeps the state before each measurement of
  the last ``history_s``; a measurement older than the newest applied one is inserted in stamp order and
  the later ones are re-applied. Older than the history: rejected and counted (``too_old``).
* **Lost and found: candidate tracks.** Top-weight hypotheses (``chain_min_relative_weight``) that no
  track explains (outside every gate) are kept as *chains*: a new one extends a chain when it is as far
  from the chain's last fix as the vehicle can have moved (odometer distance + slack). A chain of
  ``spawn_min_fixes`` starts a *candidate track* (a full state, predicted and updated like the estimate,
  at most ``max_candidates``). Each fix scores every track by its likelihood, the hypotheses as a
  mixture plus "none is right" (``miss_probability`` spread over the city, ``clutter_density_per_m2``);
  a candidate's log-likelihood ratio against the estimate sums over the fixes since its birth, each
  weighted by the distance travelled since the previous fix / ``evidence_decorrelation_m`` (repeats while
  stopped say nothing new). A candidate ``switch_llr`` likelier becomes the estimate (a
  relocalisation: a kidnap, or a wrong start on a look-alike street) and the old estimate a candidate
  ``switch_llr`` less likely (so with ``switch_llr`` > ``drop_llr``, the defaults, it is dropped at once;
  keeping it at ``drop_llr`` changed nothing on the validation drives); one ``drop_llr`` less likely, near
  the estimate (``duplicate_m``) or silent for ``candidate_timeout_s`` is dropped. This replaced "relocalise on a chain of 12 gated fixes
  over 25 m" (validation drives, route seeds 601-606: > 20 m 6.8 % -> 2.8 % of frames, kidnap
  recovery 5.2 -> 4.8 s, benchmarks/fusion_tune.py). The same chain test, with ``init_min_fixes``,
  starts the filter.
* **The reported covariance includes a rival street.** The estimate is one street, but while a candidate
  is within ``rival_spread_llr`` nats of it the pose's covariance is the two-street mixture's about the
  estimate, p_0 P + sum_i p_i (P_i + d_i d_i') (d_i the candidate's offset, P_i its covariance, p_i from the
  llrs; P_i since round 6, before P + sum_i p_i d_i d_i'): the ellipse says how far
  the other likely street is. The filter's own P, its gates and the status are unchanged. Validation drives
  (22, route seeds 601-624): 95 % ellipse coverage 89 % -> 93 %, nothing else changed.

* **Landmarks** (kind ``landmarks``, `localization.landmarks`): a frame's sign/light boxes JCBB-matched
  to a map and applied as one stacked bearing/elevation/depth update, on the confirmed estimate only
  (``_update_landmarks``; docs/landmarks.md).

Status: INITIALIZING (no consistent fixes yet, or fewer than ``init_confirm_m`` driven since the start
on the started track with no candidate likelier: on validation drives most of the time > 20 m off was a
wrong first street in the first 1-6 s; confirming over 40 m took it from 3.0 % to 0.8 % of frames), TRACKING (a fix accepted within ``degraded_after_s``),
DEGRADED (no accepted fix for longer, or the position std is over ``degraded_std_m``: predicting on
odometry / the motion model, covariance growing), LOST (a candidate track is ``lost_llr`` likelier than the
estimate, or one is ``unsupported_lost_llr`` likelier while no fix has been accepted for
``degraded_after_s`` (the gated fixes say the robot is elsewhere: not a DEGRADED pose on the wrong street;
validation > 20 m 1.4 % -> 0.8 % of frames together with the rival spread, availability unchanged), or a chain
of ``lost_min_fixes`` rejected but mutually consistent fixes, none accepted since it began, says the robot is
elsewhere, or the position std is over ``lost_std_m``).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from localization.geodesy import GeoOrigin, LocalFrame
from localization.landmarks import LANDMARKS, LandmarkObservation, associate, check_landmark_observation
from localization.measurements import (
    GPS,
    ODOMETRY,
    FixMeasurement,
    Hypothesis,
    OdometryMeasurement,
    check_measurement,
    heading_from_yaw_deg,
    wrap_angle_rad,
    yaw_from_heading_rad,
)

# ---------------------------------------------------------------------------------------------- state layout
POS = slice(0, 2)  # east_m, north_m
YAW = slice(2, 3)  # yaw_rad, counter-clockwise from east
SPEED = slice(3, 4)  # speed_mps (forward)
YAW_RATE = slice(4, 5)  # yaw_rate_radps (true, counter-clockwise +)
GYRO_BIAS = slice(5, 6)  # gyro_bias_radps (what the gyro adds)
SPEED_SCALE = slice(6, 7)  # speed_scale_error (wheels read (1 + s) * speed)
DIM_X = 7
_E, _N, _YAW, _V, _W, _B, _S = range(DIM_X)  # scalar positions of the slices above (for Jacobian entries)


class Status:
    INITIALIZING = "initializing"
    TRACKING = "tracking"
    DEGRADED = "degraded"
    LOST = "lost"


# Chi-square quantiles (numpy only, so tabulated): chi2.ppf(p, dof).
CHI2_2DOF_999 = 13.82  # p = 0.999, 2 dof
CHI2_1DOF_999 = 10.83  # p = 0.999, 1 dof
CHI2_2DOF_9999 = 18.42  # p = 0.9999, 2 dof


@dataclass(frozen=True)
class FilterParams:
    """Every tunable of the filter, with its unit and default (robot_localization ekf.yaml in spirit)."""

    # Process noise: continuous white-noise spectral densities (the variance added per second).
    accel_std_mps2: float = 2.0  # forward acceleration noise, m/s^2 (speed random walk; braking at lights)
    yaw_accel_std_radps2: float = 1.0  # yaw acceleration noise, rad/s^2 (entering turns at intersections)
    position_std_m_per_sqrt_s: float = 0.5  # unmodelled sideways motion (lane changes), m/sqrt(s); 0.2 -> 0.5
    #   raised 95 % coverage on the validation drives from 75 % to 92 % at the same median
    yaw_std_rad_per_sqrt_s: float = 0.01  # unmodelled yaw changes, rad/sqrt(s)
    gyro_bias_walk_radps_per_sqrt_s: float = 0.001  # gyro bias random walk
    speed_scale_walk_per_sqrt_s: float = 0.0005  # wheel-radius drift (tyre pressure, load), 1/sqrt(s)
    max_predict_step_s: float = 0.1  # longer predictions are split into steps of at most this
    # Odometry measurement noise: the *white* part (the scale error and gyro bias are states).
    odometry_speed_std_mps: float = 0.1
    odometry_yaw_rate_std_radps: float = 0.01
    # Initial uncertainty of what fixes do not give.
    initial_speed_std_mps: float = 5.0
    initial_yaw_rate_std_radps: float = 0.3
    initial_gyro_bias_std_radps: float = 0.01
    initial_speed_scale_std: float = 0.05
    initial_yaw_std_rad: float = 0.5  # when the fixes carry a heading; without one: pi
    # Fix handling.
    min_fix_std_m: float = 0.2  # floor on a hypothesis's position std (over-confident sources); 0.5 before
    #   the place-recognition PoseNet, whose right hypotheses are within ~0.3 m (validation, 22 drives:
    #   median 0.20 -> 0.15 m, coverage 99.8 -> 99.1 %; fix_decorrelation_m 5 gave 98.7 % but let a
    #   consistently heavier look-alike take over, test_a_mixture_fix_picks_the_hypothesis_that_fits_the_track)
    min_heading_std_deg: float = 2.0  # floor on a fix's heading std
    fix_decorrelation_m: float = 2.0  # fixes closer together than this (travelled) share their error:
    #   a fix's R is inflated by fix_decorrelation_m / distance travelled since the last used fix (a
    #   stopped camera sends the same image, and PoseNet the same error, again and again). 10 m before the
    #   place PoseNet, whose fixes decorrelate within ~2 m (validation, 22 drives, with fix_cov_scale
    #   1.5 -> 1.0: 95 % coverage 99.1 -> 96.7 %, median 0.15 -> 0.13 m, p95, > 20 m and kidnap recovery
    #   unchanged; 0 m: 96.3 %) ...
    max_fix_inflation: float = 100.0  # ... by at most this factor
    evidence_decorrelation_m: float = 10.0  # a fix's evidence for or against a candidate track counts by the
    #   distance travelled since the previous fix / this (at most 1): a street's look-alike errors repeat over
    #   metres. Was fix_decorrelation_m itself; at 2 m it would let > 20 m rise 0.2 -> 1.7 % (validation)
    stationary_speed_mps: float = 0.05  # odometry speed under this: stopped, the yaw rate is 0 (a car does
    stationary_yaw_rate_std_radps: float = 0.002  # not turn in place): a zero-yaw-rate update with this std
    max_hypotheses: int = 8  # extra hypotheses of a fix are ignored (lowest weights first)
    mixture: str = "max"  # hypotheses inside the gate: "max" (max-mixture) or "moment_match" (PDA)
    # Mahalanobis gates (squared distance, chi-square quantile of the measurement's dof).
    gate_posenet_chi2: float = CHI2_2DOF_999  # PoseNet position, 2 dof, p = 0.999
    gate_gps_chi2: float = CHI2_2DOF_999  # GPS position, 2 dof
    gate_heading_chi2: float = CHI2_1DOF_999  # heading of a fix, 1 dof
    gate_odometry_chi2: float = CHI2_2DOF_9999  # speed + yaw rate, 2 dof, p = 0.9999
    use_gps: bool = False  # GPS fixes are used only when True (users with a part-time receiver); else counted
    fix_cov_scale: float = 1.0  # every hypothesis's covariance times this (the source's calibration is
    #   per fix; errors correlated along a street need more): 1.5 for the regression PoseNet (validation
    #   coverage 90 % -> 94 %); 1.0 with the place PoseNet and fix_decorrelation_m 2 (see there)
    # Initialisation, candidate tracks and relocalisation (see the module docstring).
    init_min_fixes: int = 3  # fixes that agree with each other (and the odometer) start the filter ...
    init_confirm_m: float = 40.0  # ... which stays INITIALIZING (no valid pose) until it has driven this far
    #   on the started track with no candidate track likelier: a wrong first street is not reported
    spawn_min_fixes: int = 4  # a chain of this many gated but mutually consistent fixes starts a candidate
    max_candidates: int = 3  # candidate tracks kept at most (the least likely dropped first)
    switch_llr: float = 16.0  # a candidate this much more likely (log-likelihood ratio, nats, over the
    #   decorrelated fixes since its birth) than the estimate replaces it: a relocalisation
    lost_llr: float = 6.0  # ... this much more likely: the status is LOST until one or the other wins
    unsupported_lost_llr: float = 0.0  # an estimate that has accepted no fix for degraded_after_s is LOST,
    #   not DEGRADED, once a candidate is this much likelier (nats): the fixes it gates say it is elsewhere
    #   (validation, 22 drives: > 20 m 1.4 % -> 0.8 % with rival_spread_llr, availability unchanged); inf: off
    drop_llr: float = 12.0  # a candidate this much less likely than the estimate is dropped
    rival_spread_llr: float = 3.0  # candidate tracks within this many nats of the estimate widen the
    #   reported covariance by their spread (the mixture's covariance about the estimate; the filter's own P
    #   and the status are unchanged): validation 95 % coverage 89 % -> 93 %; 0: off
    candidate_timeout_s: float = 5.0  # a candidate that explains no fix for this long is dropped
    duplicate_m: float = 10.0  # a candidate this close to the estimate is the same track: dropped
    miss_probability: float = 0.1  # probability that none of a fix's hypotheses is right, at least
    clutter_density_per_m2: float = 1e-5  # density of a fix that is not right (about 1 / city area)
    lost_min_fixes: int = 5  # a chain this long, with no fix accepted since it began, makes the status LOST
    chain_gap_s: float = 2.0  # a chain not extended for this long is dropped
    chain_slack_m: float = 3.0  # allowed mismatch between fix-to-fix distance and odometer distance, +3 sigma
    chain_max_speed_mps: float = 25.0  # distance bound per second when no odometry has been seen
    max_chains: int = 32
    chain_min_relative_weight: float = 0.5  # only hypotheses with at least this share of the fix's top
    #   weight join chains: a run of runner-up hypotheses does not move the filter
    restart_position_std_m: float = 5.0  # position std right after a (re)start, at least (m): the chain's
    #   last fix may itself be a few metres off; the next fixes tighten it
    # Status.
    degraded_after_s: float = 2.0  # no fix accepted for this long: DEGRADED
    degraded_std_m: float = 15.0  # position std (sqrt of the largest eigenvalue) over this: DEGRADED
    lost_std_m: float = 100.0  # ... over this: LOST
    # Time.
    history_s: float = 1.0  # late measurements up to this much older than the newest are re-ordered
    max_future_s: float = 30.0  # a stamp this far past the newest is rejected ...
    future_resets: int = 3  # ... unless this many in a row: the clock jumped, start again

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, float) and not value >= 0.0:  # inf is allowed: a gate of inf never rejects
                raise ValueError(f"filter parameter {name}={value!r} must be >= 0")
        if self.mixture not in ("moment_match", "max"):
            raise ValueError(f"filter parameter mixture={self.mixture!r} is not 'moment_match' or 'max'")
        if self.init_min_fixes < 1 or self.spawn_min_fixes < 2 or self.max_hypotheses < 1 or self.max_candidates < 0:
            raise ValueError("init_min_fixes >= 1, spawn_min_fixes >= 2, max_hypotheses >= 1 and "
                             "max_candidates >= 0 are required")


def plain_ekf_params(**overrides) -> FilterParams:
    """The robot_localization-style baseline: the same EKF trusting every fix as its source reports it (no
    gates, one hypothesis, its covariance unscaled, no decorrelation, no candidate tracks, no start
    confirmation, no LOST from fixes): what fusing without a defence gives."""
    return FilterParams(**{**dict(
        gate_posenet_chi2=math.inf, gate_heading_chi2=math.inf, gate_odometry_chi2=math.inf, max_hypotheses=1,
        fix_decorrelation_m=0.0, fix_cov_scale=1.0, max_candidates=0, init_confirm_m=0.0, lost_min_fixes=10**9,
        lost_std_m=math.inf), **overrides})


@dataclass
class FusedPose:
    """The filter's estimate at ``stamp_ns`` (the fields of the bus ``Pose`` record, plus ENU)."""

    stamp_ns: int
    east_m: float
    north_m: float
    lat_deg: float
    lon_deg: float
    heading_deg: float  # compass, [0, 360)
    speed_mps: float
    yaw_rate_radps: float  # counter-clockwise +
    velocity_enu_mps: tuple[float, float]
    cov_enu_m2: tuple[float, float, float, float]  # 2x2 row-major, east/north
    heading_std_deg: float
    speed_std_mps: float
    status: str
    reason: str
    inputs_used: dict[str, int]  # kind -> measurements used since the last pose
    inputs_gated: dict[str, int]  # kind -> measurements gated or rejected since the last pose
    valid: bool
    landmark_ids: list[str] = field(default_factory=list)  # map landmarks used since the last pose


@dataclass
class _Link:
    """One fix in a chain of rejected (or initial) fixes."""

    stamp_ns: int
    east_m: float
    north_m: float
    var_m2: float  # largest eigenvalue of the fix covariance
    heading_deg: float | None
    heading_std_deg: float
    odometer_m: float  # the filter's odometer at stamp_ns


@dataclass(eq=False)  # identity: tracks are removed from lists by identity
class _Track:
    """A candidate track: another street the fixes may be saying the robot is on."""

    x: np.ndarray
    P: np.ndarray
    born_ns: int
    last_accept_ns: int
    llr: float = 0.0  # log-likelihood ratio against the estimate over the fixes since birth (decorrelated)


class _Shared(tuple):
    """An immutable tuple that a history rewind's deepcopy shares instead of copying."""

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


@dataclass
class _Core:
    """Everything a history rewind must restore (copied before each measurement)."""

    x: np.ndarray = field(default_factory=lambda: np.zeros(DIM_X))
    P: np.ndarray = field(default_factory=lambda: np.eye(DIM_X))
    stamp_ns: int | None = None  # time of x, P
    initialized: bool = False
    status: str = Status.INITIALIZING
    reason: str = "waiting for fixes that agree with each other"
    chains: list[list[_Link]] = field(default_factory=list)
    candidates: list[_Track] = field(default_factory=list)
    odometer_m: float = 0.0  # distance travelled by the estimate (|speed| integrated)
    seen_odometry: bool = False
    last_accept_ns: int | None = None
    evidence_odometer_m: float = 0.0  # the odometer at the previous fix (candidates' evidence)
    confirmed: bool = False  # init_confirm_m driven since the start with no likelier candidate
    start_odometer_m: float = 0.0  # the odometer when the filter started
    last_fix_odometer_m: dict[str, float] = field(default_factory=dict)  # odometer at the last used fix, by kind
    used: dict[str, int] = field(default_factory=dict)  # cumulative counts by kind
    gated: dict[str, int] = field(default_factory=dict)
    relocalisations: int = 0
    recent_landmarks: _Shared = field(default_factory=lambda: _Shared())  # (used count, id), the last 256
    landmark_odometer_m: dict[str, float] = field(default_factory=dict)  # odometer at each landmark's last use
    disputed_landmarks: frozenset[str] = frozenset()  # their declared map spread did not check out: the floor
    landmark_nis: _Shared = field(default_factory=lambda: _Shared())  # (nis, dof) of the recent landmark updates
    landmarks_suspended_until_ns: int = 0  # landmark NIS too high: none used until then


class PoseFilter:
    """EKF over (east, north, yaw, speed, yaw rate, gyro bias, speed scale error); see the module docstring.

    >>> f = PoseFilter(origin=GeoOrigin())
    >>> f.handle("odom", t_ns, OdometryMeasurement(speed_mps=8.0, yaw_rate_radps=0.0))
    >>> f.handle("posenet", t_ns, single_fix(120.0, 40.0, np.diag([25.0, 25.0]), heading_deg=90.0, heading_std_deg=5))
    >>> pose = f.pose(t_ns)     # FusedPose: east/north, lat/lon, heading, covariance, status, reason

    After each step ``x_prior``/``P_prior`` (after the last predict) and ``x_post``/``P_post`` (after the
    last update) are kept, as in filterpy. ``counters`` holds why measurements were rejected (invalid,
too_old, future, disabled, by kind); gated counts live in the state (``gated_counts``).
    """

    def __init__(self, params: FilterParams | None = None, *, origin: GeoOrigin | None = None) -> None:
        self.params = params or FilterParams()
        self.frame = LocalFrame(origin) if origin is not None else None
        self._core = _Core()
        self._history: list[tuple[int, int, str, object, _Core]] = []  # (stamp, seq, kind, meas, core before)
        self._seq = 0
        self._future_run = 0
        self._reported_used: dict[str, int] = {}
        self._reported_gated: dict[str, int] = {}
        self.counters: dict[str, int] = {}  # rejection reasons outside the state (invalid, too_old, future)
        self._rejected: dict[str, int] = {}  # rejections by kind (outside the state: never replayed)
        self.last_rejection = ""  # why the last rejected measurement was rejected (one line)
        self.x_prior = self.x_post = self._core.x.copy()
        self.P_prior = self.P_post = self._core.P.copy()

    # ------------------------------------------------------------------------------------------ public

    @property
    def x(self) -> np.ndarray:
        return self._core.x

    @property
    def P(self) -> np.ndarray:
        return self._core.P

    @property
    def status(self) -> str:
        return self._core.status

    @property
    def reason(self) -> str:
        return self._core.reason

    @property
    def stamp_ns(self) -> int | None:
        return self._core.stamp_ns

    @property
    def gated_counts(self) -> dict[str, int]:
        """Measurements gated so far, by kind (``posenet_heading``: a fix whose heading was gated)."""
        return dict(self._core.gated)

    @property
    def relocalisations(self) -> int:
        return self._core.relocalisations

    def handle(self, kind: str, stamp_ns: int, measurement: FixMeasurement | OdometryMeasurement) -> str:
        """Apply one measurement taken at ``stamp_ns``. Returns what happened: ``used``, ``gated``,
        ``init`` (it started the filter), ``relocalised``, ``pending`` (kept for initialisation), or
        ``rejected:<why>`` (invalid, too_old, future, disabled)."""
        why = check_landmark_observation(measurement) if kind == LANDMARKS else check_measurement(kind, measurement)
        if why is not None:
            return self._reject(kind, "invalid", why)
        if kind == GPS and not self.params.use_gps:
            return self._reject(kind, "disabled", "GPS fixes are disabled (use_gps=False)")
        newest = self._history[-1][0] if self._history else self._core.stamp_ns
        if newest is not None and stamp_ns > newest + int(self.params.max_future_s * 1e9):
            self._future_run += 1
            if self._future_run < self.params.future_resets:
                return self._reject(kind, "future", f"stamp {stamp_ns} is > {self.params.max_future_s} s past {newest}")
            self._reset()  # the clock jumped for good: start again on the new time base
        self._future_run = 0
        core = self._core
        if core.stamp_ns is not None and stamp_ns < core.stamp_ns:
            return self._insert_late(kind, stamp_ns, measurement)
        self._seq += 1
        self._history.append((stamp_ns, self._seq, kind, measurement, copy.deepcopy(core)))
        self._trim_history()
        return self._apply(kind, stamp_ns, measurement)

    def pose(self, stamp_ns: int | None = None) -> FusedPose:
        """The estimate predicted to ``stamp_ns`` (default: the newest measurement's); does not change
        the filter. Resets the used/gated counts reported with the next pose."""
        core = self._core
        stamp = core.stamp_ns if stamp_ns is None else int(stamp_ns)
        x, P = core.x, core.P
        if stamp is not None and core.stamp_ns is not None and stamp > core.stamp_ns and core.initialized:
            x, P = self._predicted(x, P, (stamp - core.stamp_ns) * 1e-9)
        status, reason = self._status_at(core, P, stamp)
        if stamp is not None and stamp < core.landmarks_suspended_until_ns:
            reason += "; landmarks suspended: their innovations were too large for their noise"
        e, n = float(x[_E]), float(x[_N])
        lat = lon = float("nan")
        if self.frame is not None:
            la, lo, _ = self.frame.to_geodetic(e, n)
            lat, lon = float(la), float(lo)
        all_gated = dict(core.gated)
        for k, v in self._rejected.items():
            all_gated[k] = all_gated.get(k, 0) + v
        used = {k: v - self._reported_used.get(k, 0) for k, v in core.used.items() if v - self._reported_used.get(k, 0)}
        gated = {k: v - self._reported_gated.get(k, 0) for k, v in all_gated.items()
                 if v - self._reported_gated.get(k, 0)}
        landmark_ids = [i for k, i in core.recent_landmarks if k > self._reported_used.get(LANDMARKS, 0)]
        self._reported_used, self._reported_gated = dict(core.used), all_gated
        speed, yaw = float(x[_V]), float(x[_YAW])
        cov = P[POS, POS] + self._rival_spread(core)
        return FusedPose(
            stamp_ns=stamp or 0, east_m=e, north_m=n, lat_deg=lat, lon_deg=lon,
            heading_deg=heading_from_yaw_deg(yaw), speed_mps=speed, yaw_rate_radps=float(x[_W]),
            velocity_enu_mps=(speed * math.cos(yaw), speed * math.sin(yaw)),
            cov_enu_m2=(float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 0]), float(cov[1, 1])),
            heading_std_deg=min(math.degrees(math.sqrt(P[_YAW, _YAW])), 180.0),
            speed_std_mps=math.sqrt(P[_V, _V]), status=status, reason=reason,
            inputs_used=used, inputs_gated=gated,
            valid=core.initialized and status in (Status.TRACKING, Status.DEGRADED), landmark_ids=landmark_ids)

    def _rival_spread(self, core: _Core) -> np.ndarray:
        """[2, 2] m^2 added to the reported position covariance P for the candidate tracks within
        ``rival_spread_llr`` of the estimate: sum_i p_i (d_i d_i' + P_i - P), d_i the candidate's offset from
        the estimate, P_i its position covariance and p_i its probability (exp(llr_i) normalised with the
        estimate's exp(0)), so that the reported covariance is the mixture's about the estimate,
        p_0 P + sum_i p_i (P_i + d_i d_i'). The estimate stays one street, but its ellipse says how far the
        other likely street is, and how well that street is known (a young candidate's P_i is metres wide:
        with d_i d_i' alone a truth a few metres to the side of it fell outside once P was 1 m)."""
        p = self.params
        rivals = [c for c in core.candidates if p.rival_spread_llr > 0.0 and c.llr > -p.rival_spread_llr]
        if not rivals:
            return np.zeros((2, 2))
        w = np.exp(np.array([0.0, *(c.llr for c in rivals)]) - max(0.0, *(c.llr for c in rivals)))
        w /= w.sum()
        d = np.array([c.x[POS] - core.x[POS] for c in rivals])  # [R, 2] m
        spread = (d.T * w[1:]) @ d
        for wi, c in zip(w[1:], rivals, strict=True):
            spread += wi * (c.P[POS, POS] - core.P[POS, POS])
        return 0.5 * (spread + spread.T)

    # ------------------------------------------------------------------------------------------ time

    def _reject(self, kind: str, why: str, detail: str) -> str:
        key = f"{why}:{kind}"
        self.counters[key] = self.counters.get(key, 0) + 1
        self._rejected[kind] = self._rejected.get(kind, 0) + 1
        self.last_rejection = detail
        return f"rejected:{why}"

    def _reset(self) -> None:
        self._core = _Core(used=self._core.used, gated=self._core.gated)
        self._history.clear()

    def _trim_history(self) -> None:
        newest = self._history[-1][0]
        keep_ns = int(self.params.history_s * 1e9)
        while len(self._history) > 1 and self._history[0][0] < newest - keep_ns:
            self._history.pop(0)

    def _insert_late(self, kind: str, stamp_ns: int, measurement) -> str:
        """Rewind to the state before the first applied measurement later than ``stamp_ns``, apply this
        one, re-apply the rest (stamp order; equal stamps keep arrival order)."""
        newest = self._history[-1][0] if self._history else stamp_ns
        later = [k for k, entry in enumerate(self._history) if entry[0] > stamp_ns]
        if (newest - stamp_ns > int(self.params.history_s * 1e9) or not later
                or (self._history[later[0]][4].stamp_ns or 0) > stamp_ns):
            return self._reject(kind, "too_old", f"stamp {stamp_ns} is older than the {self.params.history_s} s history")
        k0 = later[0]
        self._seq += 1
        replay = [(stamp_ns, self._seq, kind, measurement)] + [e[:4] for e in self._history[k0:]]
        self._core = copy.deepcopy(self._history[k0][4])
        del self._history[k0:]
        outcome = ""
        for s, q, kd, m in replay:
            self._history.append((s, q, kd, m, copy.deepcopy(self._core)))
            out = self._apply(kd, s, m)
            if q == self._seq:
                outcome = out
        self._trim_history()
        return outcome

    # ------------------------------------------------------------------------------------------ steps

    def _apply(self, kind: str, stamp_ns: int, measurement) -> str:
        core = self._core
        if core.initialized:
            self._predict_to(stamp_ns)
        else:
            core.stamp_ns = stamp_ns if core.stamp_ns is None else max(core.stamp_ns, stamp_ns)
        if kind == ODOMETRY:
            out = self._update_odometry(measurement)
        elif kind == LANDMARKS:
            out = self._update_landmarks(measurement)
        else:
            out = self._update_fix(kind, stamp_ns, measurement)
        core.status, core.reason = self._status_at(core, core.P, core.stamp_ns)
        return out

    def _predicted(self, x: np.ndarray, P: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """x, P predicted ``dt_s`` ahead (in steps of at most max_predict_step_s)."""
        p = self.params
        n_steps = max(1, math.ceil(dt_s / p.max_predict_step_s - 1e-9))
        h = dt_s / n_steps
        q = np.zeros(DIM_X)
        q[POS] = p.position_std_m_per_sqrt_s**2
        q[YAW] = p.yaw_std_rad_per_sqrt_s**2
        q[SPEED] = p.accel_std_mps2**2
        q[YAW_RATE] = p.yaw_accel_std_radps2**2
        q[GYRO_BIAS] = p.gyro_bias_walk_radps_per_sqrt_s**2
        q[SPEED_SCALE] = p.speed_scale_walk_per_sqrt_s**2
        Q = np.diag(q * h)  # white-noise densities integrated over one step
        x = x.copy()
        for _ in range(n_steps):
            v, yaw, w = x[_V], x[_YAW], x[_W]
            phi = yaw + 0.5 * w * h  # mid-step yaw
            c, s = math.cos(phi), math.sin(phi)
            F = np.eye(DIM_X)
            F[_E, _YAW], F[_E, _V], F[_E, _W] = -v * h * s, h * c, -v * h * s * 0.5 * h
            F[_N, _YAW], F[_N, _V], F[_N, _W] = v * h * c, h * s, v * h * c * 0.5 * h
            F[_YAW, _W] = h
            x[_E] += v * h * c  # x = f(x): constant speed and yaw rate over the step
            x[_N] += v * h * s
            x[_YAW] = wrap_angle_rad(yaw + w * h)
            P = F @ P @ F.T + Q  # P = F P F' + Q
        return x, 0.5 * (P + P.T)

    def _predict_to(self, stamp_ns: int) -> None:
        core = self._core
        if core.stamp_ns is None or stamp_ns <= core.stamp_ns:
            return
        dt_s = (stamp_ns - core.stamp_ns) * 1e-9
        core.odometer_m += abs(float(core.x[_V])) * dt_s
        core.x, core.P = self._predicted(core.x, core.P, dt_s)
        for c in core.candidates:
            c.x, c.P = self._predicted(c.x, c.P, dt_s)
        core.stamp_ns = stamp_ns
        self.x_prior, self.P_prior = core.x.copy(), core.P.copy()

    @staticmethod
    def _kalman(x: np.ndarray, P: np.ndarray, y: np.ndarray, H: np.ndarray, R: np.ndarray,
                S: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The Kalman update of (x, P) with innovation ``y`` (already wrapped), in Joseph form."""
        if S is None:
            S = H @ P @ H.T + R  # S = H P H' + R
        K = P @ H.T @ np.linalg.inv(S)  # K = P H' S^-1
        x = x + K @ y  # x = x + K y
        x[_YAW] = wrap_angle_rad(x[_YAW])
        I_KH = np.eye(DIM_X) - K @ H
        P = I_KH @ P @ I_KH.T + K @ R @ K.T  # P = (I - K H) P (I - K H)' + K R K'  (Joseph form)
        return x, 0.5 * (P + P.T)

    def _update(self, y: np.ndarray, H: np.ndarray, R: np.ndarray, S: np.ndarray | None = None) -> None:
        core = self._core
        core.x, core.P = self._kalman(core.x, core.P, y, H, R, S)
        self.x_post, self.P_post = core.x.copy(), core.P.copy()

    def _count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1

    def _update_odometry(self, m: OdometryMeasurement) -> str:
        core = self._core
        core.seen_odometry = True
        if not core.initialized:
            # Before the first fix only the speed means anything: keep it for the chain test.
            core.x[_V] = m.speed_mps
            self._count(core.used, ODOMETRY)
            return "pending"
        for c in core.candidates:
            c.x, c.P, _ = self._odometry_update(c.x, c.P, m)
        x, P, ok = self._odometry_update(core.x, core.P, m)
        if not ok:
            self._count(core.gated, ODOMETRY)
            return "gated"
        core.x, core.P = x, P
        self.x_post, self.P_post = x.copy(), P.copy()
        self._count(core.used, ODOMETRY)
        return "used"

    def _odometry_update(self, x: np.ndarray, P: np.ndarray, m: OdometryMeasurement) -> tuple[np.ndarray, np.ndarray, bool]:
        """(x, P) updated with one odometry measurement; False (and x, P unchanged) when gated."""
        p = self.params
        scale, v = 1.0 + x[_S], x[_V]
        h = np.array([scale * v, x[_W] + x[_B]])  # h(x): what the wheels and gyro read
        H = np.zeros((2, DIM_X))
        H[0, _V], H[0, _S] = scale, v
        H[1, _W], H[1, _B] = 1.0, 1.0
        R = np.diag([p.odometry_speed_std_mps**2, p.odometry_yaw_rate_std_radps**2])
        y = np.array([m.speed_mps, m.yaw_rate_radps]) - h  # y = z - h(x)
        S = H @ P @ H.T + R
        if float(y @ np.linalg.solve(S, y)) > p.gate_odometry_chi2:
            return x, P, False
        x, P = self._kalman(x, P, y, H, R, S)
        if abs(m.speed_mps) < p.stationary_speed_mps:
            # Zero angular rate update: stopped wheels mean no turning, which makes the gyro bias observable.
            H0 = np.zeros((1, DIM_X))
            H0[0, _W] = 1.0
            R0 = np.array([[p.stationary_yaw_rate_std_radps**2]])
            x, P = self._kalman(x, P, -x[YAW_RATE], H0, R0)  # y = 0 - yaw_rate
        return x, P, True

    def _hypotheses(self, m: FixMeasurement) -> list[Hypothesis]:
        p = self.params
        hyps = sorted(m.hypotheses, key=lambda h: -h.weight)[: p.max_hypotheses]
        out = []
        scale = p.fix_cov_scale * m.noise_scale  # noise_scale: the measurement-noise hook (scene context)
        for h in hyps:
            cov = 0.5 * (np.asarray(h.cov_enu_m2, float) + np.asarray(h.cov_enu_m2, float).T) * scale
            cov = cov + np.eye(2) * max(0.0, p.min_fix_std_m**2 - float(np.linalg.eigvalsh(cov)[0]))
            out.append(h._replace(cov_enu_m2=cov, heading_std_deg=max(h.heading_std_deg, p.min_heading_std_deg)))
        return out

    def _update_fix(self, kind: str, stamp_ns: int, m: FixMeasurement) -> str:
        core, p = self._core, self.params
        hyps = self._hypotheses(m)
        if not core.initialized:
            return self._chain_and_maybe_start(kind, stamp_ns, hyps)
        gate = p.gate_gps_chi2 if kind == GPS else p.gate_posenet_chi2
        travelled_m = core.odometer_m - core.last_fix_odometer_m.get(kind, -math.inf)
        inflation = min(p.max_fix_inflation, max(1.0, p.fix_decorrelation_m / max(travelled_m, 1e-9)))
        inflated = [h._replace(cov_enu_m2=h.cov_enu_m2 * inflation) for h in hyps]
        # Candidate tracks: each weighs the fix against the estimate (a tempered likelihood ratio: a fix
        # counts `evidence` <= 1), then takes it like the estimate does.
        # A fix's evidence counts by the distance travelled since the previous fix (errors of one street
        # repeat for evidence_decorrelation_m): while stopped, repeats say nothing new.
        evidence = min(1.0, (core.odometer_m - core.evidence_odometer_m) / max(p.evidence_decorrelation_m, 1e-9))
        core.evidence_odometer_m = core.odometer_m
        ll_main = self._log_likelihood(core.x, core.P, hyps)
        for c in core.candidates:
            c.llr += (self._log_likelihood(c.x, c.P, hyps) - ll_main) * evidence
            c.x, c.P, chosen, _ = self._fix_update(c.x, c.P, inflated, gate)
            if chosen is not None:
                c.last_accept_ns = stamp_ns
        x, P, chosen, heading_gated = self._fix_update(core.x, core.P, inflated, gate)
        if chosen is None:
            self._count(core.gated, kind)
            outcome = "gated"
        else:
            core.x, core.P = x, P
            self.x_post, self.P_post = x.copy(), P.copy()
            self._count(core.used, kind)
            if heading_gated:
                self._count(core.gated, f"{kind}_heading")
            core.last_accept_ns = stamp_ns
            core.last_fix_odometer_m[kind] = core.odometer_m
            outcome = "used"
        self._chain_unexplained(stamp_ns, inflated, gate)
        if self._switch_to_likelier(stamp_ns):
            core.last_fix_odometer_m[kind] = core.odometer_m
            outcome = "relocalised"
            if not core.confirmed:
                core.start_odometer_m = core.odometer_m  # the first street was wrong: confirm the new one
        self._prune_candidates(stamp_ns)
        if (not core.confirmed and core.odometer_m - core.start_odometer_m >= p.init_confirm_m
                and all(c.llr <= 0.0 for c in core.candidates)):
            core.confirmed = True
        return outcome

    def _log_likelihood(self, x: np.ndarray, P: np.ndarray, hyps: list[Hypothesis]) -> float:
        """log p(fix | track): the hypotheses as a mixture, sum_i w_i N(z_i; H x, S_i), plus "none of them is
        right" (at least ``miss_probability``) spread over the city (``clutter_density_per_m2``)."""
        p = self.params
        total = sum(h.weight for h in hyps)
        scale = min(1.0, (1.0 - p.miss_probability) / max(total, 1e-12))
        density = max(p.miss_probability, 1.0 - total) * p.clutter_density_per_m2
        Ppos = P[POS, POS]
        for h in hyps:
            S = Ppos + h.cov_enu_m2
            y = np.array([h.east_m - x[_E], h.north_m - x[_N]])
            d2 = float(y @ np.linalg.solve(S, y))
            if d2 < 50.0:  # farther ones add nothing measurable
                density += scale * h.weight * math.exp(-0.5 * d2) / (2.0 * math.pi * math.sqrt(np.linalg.det(S)))
        return math.log(density)

    def _fix_update(self, x: np.ndarray, P: np.ndarray, hyps: list[Hypothesis], gate: float
                    ) -> tuple[np.ndarray, np.ndarray, Hypothesis | None, bool]:
        """(x, P) updated with the hypotheses inside the gate (max-mixture or moment-matched), then the
        chosen one's heading. Returns (x, P, the chosen hypothesis or None when all were gated, whether
        its heading was gated)."""
        p = self.params
        H = np.zeros((2, DIM_X))
        H[0, _E] = H[1, _N] = 1.0
        inside = []  # (hypothesis, y, S, log-likelihood) of the hypotheses inside the gate
        for hyp in hyps:
            y = np.array([hyp.east_m, hyp.north_m]) - x[POS]  # y = z - H x
            S = H @ P @ H.T + hyp.cov_enu_m2  # S = H P H' + R
            d2 = float(y @ np.linalg.solve(S, y))
            if d2 <= gate:
                ll = math.log(max(hyp.weight, 1e-12)) - 0.5 * d2 - 0.5 * math.log(np.linalg.det(S))
                inside.append((hyp, y, S, ll))
        if not inside:
            return x, P, None, False
        if p.mixture == "max" or len(inside) == 1:
            hyp, y, S, _ = max(inside, key=lambda c: c[3])  # max-mixture: the most likely hypothesis
            R = hyp.cov_enu_m2
        else:
            # Moment-matched gated mixture (PDA): responsibilities beta_i = w_i N(y_i; 0, S_i) / sum, one
            # update with z = sum beta_i z_i and R = sum beta_i (R_i + (z_i - z)(z_i - z)').
            ll = np.array([c[3] for c in inside])
            beta = np.exp(ll - ll.max())
            beta /= beta.sum()
            z_i = np.array([[c[0].east_m, c[0].north_m] for c in inside])
            z = beta @ z_i
            dz = z_i - z
            R = sum(b * (c[0].cov_enu_m2 + np.outer(d, d)) for b, c, d in zip(beta, inside, dz, strict=True))
            y = z - x[POS]  # y = z - H x
            S = H @ P @ H.T + R  # S = H P H' + R
            hyp = inside[int(np.argmax(beta))][0]
        x, P = self._kalman(x, P, y, H, R, S)
        heading_gated = False
        if hyp.heading_deg is not None:
            Hh = np.zeros((1, DIM_X))
            Hh[0, _YAW] = 1.0
            Rh = np.array([[math.radians(hyp.heading_std_deg) ** 2]])
            yh = np.array([wrap_angle_rad(yaw_from_heading_rad(hyp.heading_deg) - x[_YAW])])  # wrapped
            Sh = Hh @ P @ Hh.T + Rh
            if float(yh[0] ** 2 / Sh[0, 0]) > p.gate_heading_chi2:
                heading_gated = True
            else:
                x, P = self._kalman(x, P, yh, Hh, Rh, Sh)
        return x, P, hyp, heading_gated

    # ------------------------------------------------------------------------------------------ landmarks

    def _update_landmarks(self, m: LandmarkObservation) -> str:
        """Map landmarks seen as sign/light boxes (`localization.landmarks`): JCBB association on the
        estimate, then one stacked update. The city's signal heads repeat at every intersection, so
        landmarks sharpen a track that the fixes currently confirm and never choose between streets (that
        stays with the fixes and the candidate tracks; candidates are not updated). Used only when (each
        measured on validation drives, docs/landmarks.md): the estimate is confirmed, its position std is
        under ``max_position_std_m``, a fix was accepted within ``max_fix_age_s``, no candidate track is
        within ``candidate_margin_llr`` and no chain of gated fixes is growing; the frame gives
        ``min_pairs`` pairings or one with NIS under ``single_gate_chi2``; landmarks are not suspended for
        inconsistency. Each pairing's R is inflated for a landmark seen again within ``decorrelation_m``
        (consecutive frames share its error), and the position std is kept above ``min_position_std_m``.
        The map's declared spread replaces its 0.5 m floor where the fixes can check it (``associate``); a
        landmark that fails the check is remembered (``disputed_landmarks``) and counts at the floor.
        Returns ``used``, ``gated`` (boxes with landmarks in view but no unique pairing), ``skipped``
        or ``suspended``."""
        core, lp = self._core, m.params
        stamp_ns = core.stamp_ns or 0
        if stamp_ns < core.landmarks_suspended_until_ns:
            return "suspended"
        since_s = (stamp_ns - core.last_accept_ns) * 1e-9 if core.last_accept_ns else math.inf
        chain_since = max((len(c) for c in core.chains if c[0].stamp_ns > (core.last_accept_ns or 0)), default=0)
        if (not (core.initialized and core.confirmed) or since_s > lp.max_fix_age_s or chain_since >= 2
                or any(c.llr > -lp.candidate_margin_llr for c in core.candidates)
                or math.sqrt(float(np.linalg.eigvalsh(core.P[POS, POS])[-1])) > lp.max_position_std_m):
            return "skipped"
        idx = [_E, _N, _YAW]
        uses: dict[str, int] = {}
        for _, lid in core.recent_landmarks:
            uses[lid] = uses.get(lid, 0) + 1
        a = associate(core.x[idx], core.P[np.ix_(idx, idx)], m, uses, core.disputed_landmarks)
        if a.disputed:
            core.disputed_landmarks = core.disputed_landmarks | set(a.disputed)
            self.counters["landmarks_disputed"] = len(core.disputed_landmarks)
        if a.pairs and len(a.pairs) < lp.min_pairs and a.nis > lp.single_gate_chi2:
            a.unpaired += len(a.pairs)
            a.pairs = []
        if a.unpaired:
            core.gated[LANDMARKS] = core.gated.get(LANDMARKS, 0) + a.unpaired
        if not a.pairs:
            return "gated" if a.unpaired else "skipped"
        # Consistency over a window of updates: the NIS per dof averages 1 when the noise model holds.
        window = [*core.landmark_nis, (a.nis, len(a.y))][-lp.nis_window:]
        core.landmark_nis = _Shared(window)
        if len(window) >= lp.nis_window // 2 and sum(n for n, _ in window) / sum(d for _, d in window) > lp.max_mean_nis:
            core.landmarks_suspended_until_ns = stamp_ns + int(lp.suspend_s * 1e9)
            core.landmark_nis = _Shared()
            self.counters["landmarks_suspended"] = self.counters.get("landmarks_suspended", 0) + 1
            return "suspended"
        R = a.R.copy()
        for k, (_, j) in enumerate(a.pairs):
            since_m = core.odometer_m - core.landmark_odometer_m.get(m.landmarks.ids[j], -math.inf)
            f = min(lp.max_reuse_inflation, max(1.0, lp.decorrelation_m / max(since_m, 1e-9)))
            R[3 * k:3 * k + 3, 3 * k:3 * k + 3] *= f
        H = np.zeros((len(a.y), DIM_X))
        H[:, idx] = a.H
        x, P = self._kalman(core.x, core.P, a.y, H, R)
        # Floor on the position std: what landmarks leave is never tighter than the box model's truth, nor
        # wider than the fixes had made it (a floor over the prior's std would undo the fixes' work: with the
        # place PoseNet's 0.1-0.3 m fixes every landmark update widened P to 0.5 m).
        w, V = np.linalg.eigh(P[POS, POS])
        prior = np.einsum("ij,jk,ki->i", V.T, core.P[POS, POS], V)  # the prior's variance along each axis
        P[POS, POS] += V @ np.diag(np.maximum(0.0, np.minimum(lp.min_position_std_m**2, prior) - w)) @ V.T
        core.x, core.P = x, P
        self.x_post, self.P_post = core.x.copy(), core.P.copy()
        recent = list(core.recent_landmarks)
        for _, j in a.pairs:
            self._count(core.used, LANDMARKS)
            recent.append((core.used[LANDMARKS], m.landmarks.ids[j]))
            core.landmark_odometer_m[m.landmarks.ids[j]] = core.odometer_m
        core.recent_landmarks = _Shared(recent[-256:])
        return "used"

    # ------------------------------------------------------------------------------------------ chains

    def _chain_and_maybe_start(self, kind: str, stamp_ns: int, hyps: list[Hypothesis]) -> str:
        """Before the start: add the fix's hypotheses to the chains; start from one of init_min_fixes."""
        core, p = self._core, self.params
        self._extend_chains(stamp_ns, hyps)
        ready = [c for c in core.chains if len(c) >= p.init_min_fixes]
        if not ready:
            return "pending"
        P0 = np.diag([0.0, 0.0, 0.0, p.initial_speed_std_mps**2, p.initial_yaw_rate_std_radps**2,
                      p.initial_gyro_bias_std_radps**2, p.initial_speed_scale_std**2])
        core.x, core.P = self._state_from_chain(max(ready, key=len), core.x, P0)
        core.stamp_ns = max(core.stamp_ns or stamp_ns, stamp_ns)
        core.initialized = True
        core.start_odometer_m = core.odometer_m
        core.chains.clear()
        self.x_post, self.P_post = core.x.copy(), core.P.copy()
        self._count(core.used, kind)
        core.last_accept_ns = stamp_ns
        core.last_fix_odometer_m[kind] = core.odometer_m
        return "init"

    def _chain_unexplained(self, stamp_ns: int, hyps: list[Hypothesis], gate: float) -> None:
        """Chain the top-weight hypotheses that neither the estimate nor a candidate explains (outside every
        gate); a chain of spawn_min_fixes starts a candidate track."""
        core, p = self._core, self.params
        tracks = [(core.x, core.P), *((c.x, c.P) for c in core.candidates)]
        top_weight = max(h.weight for h in hyps)
        loose = []
        for h in hyps:
            if h.weight < p.chain_min_relative_weight * top_weight:
                continue
            z = np.array([h.east_m, h.north_m])
            if all(float((z - x[POS]) @ np.linalg.solve(P[POS, POS] + h.cov_enu_m2, z - x[POS])) > gate
                   for x, P in tracks):
                loose.append(h)
        self._extend_chains(stamp_ns, loose)
        ready = [c for c in core.chains if len(c) >= p.spawn_min_fixes]
        if not ready or p.max_candidates == 0:
            return
        chain = max(ready, key=len)
        core.chains.remove(chain)
        x, P = self._state_from_chain(chain, core.x, core.P)
        core.candidates.append(_Track(x, P, born_ns=stamp_ns, last_accept_ns=stamp_ns))

    def _extend_chains(self, stamp_ns: int, hyps: list[Hypothesis]) -> None:
        core, p = self._core, self.params
        core.chains = [c for c in core.chains if (stamp_ns - c[-1].stamp_ns) * 1e-9 <= p.chain_gap_s]
        if not hyps:
            return
        extended: set[int] = set()
        top_weight = max(h.weight for h in hyps)
        for hyp in hyps:
            if hyp.weight < p.chain_min_relative_weight * top_weight:
                continue
            link = _Link(stamp_ns, hyp.east_m, hyp.north_m, float(np.linalg.eigvalsh(hyp.cov_enu_m2)[-1]),
                         hyp.heading_deg, hyp.heading_std_deg, core.odometer_m)
            for k, chain in enumerate(core.chains):
                if k not in extended and chain[-1].stamp_ns < stamp_ns and self._agrees(chain[-1], link):
                    chain.append(link)
                    extended.add(k)
                    break
            else:
                core.chains.append([link])
        core.chains = core.chains[-p.max_chains:]

    def _switch_to_likelier(self, stamp_ns: int) -> bool:
        """Relocalise: a candidate switch_llr more likely than the estimate becomes the estimate, and the
        estimate a candidate (so that the fixes can switch back if the candidate was the look-alike)."""
        core, p = self._core, self.params
        if not core.candidates:
            return False
        best = max(core.candidates, key=lambda c: c.llr)
        if best.llr < p.switch_llr:
            return False
        core.candidates.remove(best)
        for c in core.candidates:
            c.llr -= best.llr
        old = _Track(core.x, core.P, born_ns=stamp_ns, last_accept_ns=core.last_accept_ns or stamp_ns, llr=-best.llr)
        core.candidates.append(old)
        core.x, core.P = best.x, best.P
        core.last_accept_ns = best.last_accept_ns
        core.relocalisations += 1
        core.chains.clear()
        self.x_post, self.P_post = core.x.copy(), core.P.copy()
        return True

    def _prune_candidates(self, stamp_ns: int) -> None:
        core, p = self._core, self.params
        keep = []
        for c in core.candidates:
            if c.llr < -p.drop_llr or (stamp_ns - c.last_accept_ns) * 1e-9 > p.candidate_timeout_s:
                continue
            if math.hypot(c.x[_E] - core.x[_E], c.x[_N] - core.x[_N]) < p.duplicate_m:
                continue  # the same street as the estimate
            keep.append(c)
        keep.sort(key=lambda c: -c.llr)
        core.candidates = keep[: p.max_candidates]

    def _chain_travel_m(self, chain: list[_Link]) -> float:
        """How far the robot moved along a chain: the odometer when there is odometry, else the fixes' path."""
        if self._core.seen_odometry:
            return chain[-1].odometer_m - chain[0].odometer_m
        return sum(math.hypot(b.east_m - a.east_m, b.north_m - a.north_m) for a, b in itertools.pairwise(chain))

    def _agrees(self, a: _Link, b: _Link) -> bool:
        """Could the vehicle have gone from fix ``a`` to fix ``b``? Distance against the odometer (or the
        speed bound when there is no odometry), with slack and 3 sigma of both fixes."""
        p, core = self.params, self._core
        dist = math.hypot(b.east_m - a.east_m, b.north_m - a.north_m)
        dt_s = (b.stamp_ns - a.stamp_ns) * 1e-9
        travelled = b.odometer_m - a.odometer_m if core.seen_odometry and core.initialized else None
        sigma = 3.0 * math.sqrt(a.var_m2 + b.var_m2)
        if travelled is not None:
            return abs(dist - travelled) <= p.chain_slack_m + sigma + 0.1 * travelled
        bound = (abs(float(core.x[_V])) + 2.0) * dt_s if core.seen_odometry else p.chain_max_speed_mps * dt_s
        return dist <= bound + p.chain_slack_m + sigma

    def _state_from_chain(self, chain: list[_Link], x0: np.ndarray, P0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A state started from a chain of agreeing fixes: position of the last, heading from the fixes'
        headings (circular mean) or the direction travelled; speed and odometry errors kept from (x0, P0)."""
        core, p = self._core, self.params
        last = chain[-1]
        x = x0.copy()
        P = P0.copy()
        x[_E], x[_N] = last.east_m, last.north_m
        headed = [lk for lk in chain if lk.heading_deg is not None]
        moved = math.hypot(last.east_m - chain[0].east_m, last.north_m - chain[0].north_m)
        if moved > 10.0 and moved > 4.0 * math.sqrt(last.var_m2):
            # The direction travelled along the chain beats single-image headings (often 45+ deg off).
            x[_YAW] = math.atan2(last.north_m - chain[0].north_m, last.east_m - chain[0].east_m)
            yaw_var = (2.0 * math.sqrt(last.var_m2) / moved) ** 2 + math.radians(10.0) ** 2
        elif headed:
            yaws = np.array([yaw_from_heading_rad(lk.heading_deg) for lk in headed])
            x[_YAW] = math.atan2(np.sin(yaws).mean(), np.cos(yaws).mean())
            yaw_var = max(p.initial_yaw_std_rad**2, math.radians(min(lk.heading_std_deg for lk in headed)) ** 2)
        else:
            yaw_var = math.pi**2
        if not core.seen_odometry and len(chain) > 1:
            x[_V] = moved / max((last.stamp_ns - chain[0].stamp_ns) * 1e-9, 1e-3)
        # The new position and heading know nothing of the old state: drop their cross-covariances.
        for s_ in (POS, YAW):
            P[s_, :] = 0.0
            P[:, s_] = 0.0
        P[POS, POS] = np.eye(2) * max(last.var_m2, p.restart_position_std_m**2)
        P[_YAW, _YAW] = yaw_var
        return x, P

    # ------------------------------------------------------------------------------------------ status

    def _status_at(self, core: _Core, P: np.ndarray, stamp_ns: int | None) -> tuple[str, str]:
        p = self.params
        if not core.initialized:
            return Status.INITIALIZING, "waiting for fixes that agree with each other"
        if not core.confirmed and p.init_confirm_m > 0:
            return Status.INITIALIZING, (f"confirming the start: {core.odometer_m - core.start_odometer_m:.0f} "
                                         f"of {p.init_confirm_m:g} m driven on it")
        std_m = math.sqrt(float(np.linalg.eigvalsh(P[POS, POS])[-1]))
        best = max(core.candidates, key=lambda c: c.llr, default=None)
        if best is not None and best.llr > p.lost_llr:
            away_m = math.hypot(best.x[_E] - core.x[_E], best.x[_N] - core.x[_N])
            return Status.LOST, (f"the fixes favour a place {away_m:.0f} m away (log-likelihood ratio "
                                 f"{best.llr:.1f}): the robot may be elsewhere")
        since_s = (stamp_ns - core.last_accept_ns) * 1e-9 if stamp_ns is not None and core.last_accept_ns else 0.0
        if best is not None and best.llr > p.unsupported_lost_llr and since_s > p.degraded_after_s:
            away_m = math.hypot(best.x[_E] - core.x[_E], best.x[_N] - core.x[_N])
            return Status.LOST, (f"no fix accepted for {since_s:.1f} s and the fixes favour a place {away_m:.0f} m "
                                 f"away (log-likelihood ratio {best.llr:.1f})")
        since_ns = core.last_accept_ns or 0
        longest = max((len(c) for c in core.chains if c[0].stamp_ns > since_ns), default=0)
        if longest >= p.lost_min_fixes:
            return Status.LOST, f"{longest} consistent fixes disagree with the estimate: the robot is elsewhere"
        if std_m > p.lost_std_m:
            return Status.LOST, f"position std {std_m:.0f} m > {p.lost_std_m:g} m"
        if since_s > p.degraded_after_s:
            return Status.DEGRADED, f"no fix accepted for {since_s:.1f} s"
        if std_m > p.degraded_std_m:
            return Status.DEGRADED, f"position std {std_m:.0f} m > {p.degraded_std_m:g} m"
        return Status.TRACKING, "fixes accepted"
