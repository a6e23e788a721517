"""The tracker's settings: `TrackerConfig` (association, lifecycle, output policy, the per-class table) and
`OutputBox`; `tracking.tracker` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from drivestack.tracking.association import Matcher, Metric
from drivestack.tracking.params import ClassParams


class OutputBox(str, Enum):
    """Which box a track updated this frame reports."""

    DETECTION = "detection"  # the detection it was updated with (lidar boxes: ~0.2-0.4 m; the filter lags them)
    FILTERED = "filtered"  # the Kalman filter's posterior box


@dataclass(frozen=True)
class TrackerConfig:
    """Kalman filter tracker settings (defaults for nuScenes keyframes at 2 Hz; per-class values in `classes`)."""

    classes: ClassParams = field(default_factory=ClassParams)
    """Per-class table: score thresholds, NMS IoU, gates, noises (tracking/params.py says where each comes from)."""
    metric: Metric = Metric.NLL
    """Association cost: negative log-likelihood (Mahalanobis d^2 + ln det S/R: an uncertain newborn pays for
    its spread), Mahalanobis d^2, or centre distance [m] after prediction (see tracking.association.Metric).
    Every metric is also held to the per-class centre-distance gate."""
    matcher: Matcher = Matcher.GREEDY
    """Pair selection: greedy cheapest-first (CenterPoint) or optimal (Hungarian, scipy; it maximises the summed
    margin, which trades a good pair for two poor ones: 38 IDS against 4 on scene-0523, AMOTA 0.643 vs 0.705;
    but 0.924 vs 0.809 on one seed of the synthetic highway oracle, see docs/tracking.md)."""
    gate_sigmas: float = 2.0
    """A track's centre-distance gate is classes.max_distance plus this many predicted position std (per axis):
    wide for a newborn whose velocity is unknown, classes.max_distance once the velocity has settled."""
    mahalanobis_gate: float = 13.8
    """Largest cost of a valid pair with metric nll or mahalanobis (13.8: chi-square, 2 dof, 99.9 %)."""
    max_log_det: float = 5.0
    """Cap on the ln(det S / det R) term of metric=nll, so a track with no velocity yet can still be matched."""
    heading_prior: bool = True
    """A vehicle moves along its heading: a track with one hit (velocity still unknown) is associated under a
    velocity prior of std init_speed_std along its box's heading and init_speed_std x sin(yaw_std) across it
    (a heading error of yaw_std at any speed), not the filter's isotropic one. Pedestrians stay isotropic.
    It only shapes the association cost (the filter's per-axis blocks cannot hold the correlation; the first
    update then sets the velocity by two-point differencing, as the filter's wide prior makes it). Without it a
    newborn prefers a detection that did not move: in a platoon, the car behind, now where the one ahead was."""
    two_stage: bool = True
    """Associate detections at or above classes.birth_score first, then the lower ones with the tracks left
    (they only extend tracks). False: one stage, and every unmatched detection starts a track."""
    nms: bool = True
    """Per-class BEV NMS of the detections (threshold classes.nms_iou)."""
    output_box: OutputBox = OutputBox.FILTERED
    """Box reported by a track updated this frame: the filtered state, or its detection's (coasting tracks
    always report their prediction). With the per-class noises the filter does not lag a lidar detector: same
    AMOTA on scene-0523 (0.705 vs 0.706), AMOTP 0.513 m filtered vs 0.519 m detection (oracle: 0.539 vs 0.581)."""
    min_hits: int = 2
    """Hits (matched frames) after which a track is confirmed (output at full score, coasted). 2: confirmed at its
    second hit, as ByteTrack activates a track in the frame after its birth. The second hit is the first at which
    a track without detector velocities has a motion state (two-point differencing sets its velocity; before,
    its prediction is its birth position spread by the class's whole speed prior), so it is the first at which
    coasting it means anything; and AMOTA averages each track's scores, so every confirmation frame held back
    costs every true track that frame's score (most of all the short ones) while long false tracks barely pay.
    On scene-0523 (docs/tracking.md) 3 -> 2: CenterPoint 0.712 -> 0.734, oracle (8 seeds) 0.924 -> 0.927,
    synthetic highway (3 seeds) 0.975 -> 0.976; 1 (CenterPoint's, SimpleTrack's, Poly-MOT's: every track at
    full score from its first detection): 0.737, 0.918, 0.972 (coasting one-hit tracks adds false boxes)."""
    max_misses: int = 5
    """A confirmed track missed in more than this many consecutive frames is deleted."""
    max_misses_tentative: int = 5
    """A tentative track missed in more than this many consecutive frames is deleted (0: at its first miss, as
    SORT does; keeping young tracks through gaps pays on nuScenes, where objects blink in and out of view)."""
    pos_std: float | None = None
    """[m] measurement noise of the detected centre (x, y) for every class (None: classes.pos_std)."""
    z_std: float = 0.5
    """[m] measurement noise of the detected centre height."""
    yaw_std: float = 0.3
    """[rad] measurement noise of the detected yaw."""
    size_std: float = 0.3
    """[m] measurement noise of the detected size (w, l, h)."""
    velocity_std: float = 1.0
    """[m/s] measurement noise of detected velocities (used when the detector gives them)."""
    use_detection_velocity: bool = True
    """Update the velocity with the detector's own (vx, vy) where it gives one (NaN: none)."""
    accel_std: float | None = None
    """[m/s^2] process noise, white acceleration of the centre, for every class (None: classes.accel_std)."""
    yaw_accel_std: float = 1.0
    """[rad/s^2] process noise: white angular acceleration of the yaw."""
    size_walk_std: float = 0.05
    """[m/sqrt(s)] process noise: random walk of the box size."""
    init_speed_std: float | None = None
    """[m/s] prior std of a new track's velocity (per axis) when the detector gives none, for every class
    (None: classes.init_speed_std)."""
    init_yaw_rate_std: float = 1.0
    """[rad/s] prior standard deviation of a new track's yaw rate."""
    flip_yaw: bool = True
    """Treat a yaw innovation beyond 90 deg as the box detected backwards (AB3DMOT's orientation correction)."""
    min_detection_score: float = 0.0
    """Detections scoring below this are dropped, whatever their class (on top of classes.min_score)."""
    tentative_score: float = 0.5
    """Output score factor of tentative tracks."""
    coast_frames: int = 1
    """Also output a confirmed track for up to this many consecutive missed frames (its predicted box; 0: never).
    The metric interpolates a track across a gap by itself, so coasting pays only at the ends of tracks."""
    coast_decay: float = 0.5
    """Output score factor per consecutive missed frame of a coasting track."""

    def validate(self) -> TrackerConfig:
        """Raise ValueError naming the first bad field."""
        self.classes.validate()
        positive = (
            "mahalanobis_gate",
            "z_std",
            "yaw_std",
            "size_std",
            "velocity_std",
            "init_yaw_rate_std",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"tracker.{name} must be > 0, got {getattr(self, name)}")
        for name in ("pos_std", "init_speed_std"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(
                    f"tracker.{name} must be > 0 (or None: the per-class table), got {getattr(self, name)}"
                )
        for name in ("yaw_accel_std", "size_walk_std", "gate_sigmas", "max_log_det"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"tracker.{name} must be >= 0, got {getattr(self, name)}")
        if self.accel_std is not None and not self.accel_std >= 0:
            raise ValueError(f"tracker.accel_std must be >= 0 (or None: the per-class table), got {self.accel_std}")
        if self.min_hits < 1:
            raise ValueError(f"tracker.min_hits must be >= 1, got {self.min_hits}")
        for name in ("max_misses", "max_misses_tentative", "coast_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"tracker.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("tentative_score", "coast_decay", "min_detection_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"tracker.{name} must be in [0, 1], got {getattr(self, name)}")
        return self

    def class_params(self) -> ClassParams:
        """The per-class table with the all-class overrides (pos_std, accel_std, init_speed_std) applied."""
        return self.classes.uniform(pos_std=self.pos_std, accel_std=self.accel_std, init_speed_std=self.init_speed_std)
