"""Seeded synthetic chest radiographs ("phantoms") in the layout of the Kaggle pneumonia release.

No real data set can be downloaded on the test and CI machines, yet every stage of the study (the
GANs, the classifier, the metrics) needs a data set with a real distribution to fit and a real,
visible disease signal. The phantoms provide both: a posteroanterior chest radiograph drawn from a
few dozen anatomical and technical parameters (lungs, heart, mediastinum, diaphragm, ribs,
clavicles, vessels, soft tissue, exposure, noise), and for PNEUMONIA one to several soft, mottled
opacities inside the lung fields. Nothing else differs between the classes, so a classifier can
only succeed by looking at the lungs.

Speed matters (the benchmark writes 1,341 images of about 1500 px), so the smooth anatomy is drawn
at a reduced working resolution with vectorised numpy and upsampled; only the detector noise is
drawn at full resolution.

Determinism: every image has its own generator seeded from (seed, stable key), so the same spec
gives byte-identical files whatever the number of worker processes.

Why one module of about 1,000 lines: the renderer's small anatomy functions share one
frame, one set of parameters and one seeding scheme, and a change to the phantom (a new
structure, another shift) is made and reviewed in one place; the data set writer at the end
is the renderer's only caller.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from cxrlib.data.layout import PHANTOM_NOTE

LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")

# Keys that separate the generator streams derived from one seed, so that e.g. adding an image
# to the plan never changes the anatomy of an existing patient.
_PLAN_KEY = 0
_PATIENT_KEY = 1
_IMAGE_KEY = 2

# The anatomy is drawn on a grid whose longer side is clamped to this range; above it the output
# is upsampled (the anatomy is smooth), below it downsampled (so small outputs stay antialiased).
_WORK_MIN = 160
_WORK_MAX = 384
# Density removed by fully aerated lung; opacities give part of it back.
_AIR = 0.50
# Opacity strength is drawn from _STRENGTH_MIN + (1 - _STRENGTH_MIN) * Beta(*_STRENGTH_BETA):
# mostly clear, sometimes subtle. Lesion radii are scaled by _LESION_SCALE, and every pneumonia
# also gets a bilateral mottled haze replacing up to _HAZE of the lung air (reduced aeration, as
# most of the paediatric films of the Kaggle release show). Tuned so that a ResNet18 trained
# from scratch on 100 + 100 images at 64 px separates the classes (test AUROC about 0.9,
# benchmarks/README.md "Phantom disease signal"): weaker settings (0.15, Beta(1.5, 1.5), no
# haze) left it at 0.55-0.70, too faint for the classifier stage to be tested at demo scale.
_STRENGTH_MIN = 0.5
_STRENGTH_BETA = (3.0, 1.2)
_LESION_SCALE = 1.2
_HAZE = 0.3

_FloatArray = np.ndarray


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anatomy:
    """Per-patient anatomy, in units of half the shorter image side at zoom 1.

    Kept apart from the per-image pose and exposure so that several images of one patient look
    alike but not identical, as repeat radiographs of a real patient do. Lateral distances are
    measured from the midline (positive outwards for either lung), heights downwards.
    """

    lung_width: float  # scale of all lateral lung distances
    lung_height: float  # scale of all lung heights, measured from the apex
    apex_y: float  # top of the lung apices
    dome_right: float  # top of the right hemidiaphragm (patient's right = image left)
    dome_left: float  # top of the left hemidiaphragm, normally a little lower
    cp_depth: float  # how far the costophrenic angles reach below the domes
    mediastinum: float  # half width of the upper mediastinum
    aortic_knob: float  # lateral reach of the aortic knob into the left lung
    heart_right: float  # lateral reach of the right heart border
    heart_left: float  # lateral reach of the left heart border (cardiac size)
    heart_level: float  # height of the widest part of the heart
    body_width: float  # half width of the trunk
    shoulder_y: float  # height of the shoulders
    soft_tissue: float  # density of the soft tissue (habitus)
    breast: float  # extra soft tissue over the lower lung zones, 0..1
    rib_y0: float  # height of the first posterior rib at the spine
    rib_spacing: float  # vertical spacing of the posterior ribs
    rib_slope: float  # how much the posterior ribs rise next to the spine before arching down
    rib_curvature: float  # how strongly they curve
    clavicle_y: float  # height of the medial clavicle ends
    clavicle_tilt: float  # rise of the clavicles towards the shoulders
    spine_width: float  # half width of the vertebral column
    trachea_shift: float  # lateral deviation of the trachea
    gastric_bubble: float  # size of the gas bubble under the left dome (0: none)
    detail_seed: int = 0  # seeds the vessel tree and the outline irregularities


@dataclass(frozen=True)
class _Pose:
    """Per-image positioning and exposure: what differs between two films of one patient."""

    zoom: float
    shift: tuple[float, float]
    rotation: float  # radians
    inspiration: float  # scales the lung height
    level: float  # density shown black
    window: float  # density range mapped to the grey scale
    gamma: float
    blur_px: float  # at working resolution
    noise: float  # detector noise, grey levels (of 255) at full resolution
    mottle: float  # correlated quantum mottle, density units
    heel: tuple[float, float]  # linear exposure gradient (x, y)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy; the ranges keep every combination plausible."""
    u = rng.uniform
    dome_right = u(0.30, 0.40)
    return Anatomy(
        lung_width=u(0.9, 1.06),
        lung_height=u(0.93, 1.07),
        apex_y=u(-0.86, -0.78),
        dome_right=dome_right,
        dome_left=dome_right + u(0.0, 0.08),
        cp_depth=u(0.12, 0.20),
        mediastinum=u(0.10, 0.14),
        aortic_knob=u(0.17, 0.23),
        heart_right=u(0.17, 0.25),
        heart_left=u(0.44, 0.58),
        heart_level=u(0.16, 0.26),
        body_width=u(0.92, 1.06),
        shoulder_y=u(-0.95, -0.85),
        soft_tissue=u(0.85, 1.15),
        breast=float(rng.choice([0.0, u(0.2, 1.0)])),
        rib_y0=u(-0.90, -0.84),
        rib_spacing=u(0.105, 0.125),
        rib_slope=u(0.15, 0.30),
        rib_curvature=u(0.75, 1.05),
        clavicle_y=u(-0.78, -0.68),
        clavicle_tilt=u(0.12, 0.30),
        spine_width=u(0.065, 0.085),
        trachea_shift=u(-0.02, 0.02),
        gastric_bubble=float(rng.choice([0.0, u(0.05, 0.11)], p=[0.35, 0.65])),
        detail_seed=int(rng.integers(2**31)),
    )


def _sample_pose(rng: np.random.Generator) -> _Pose:
    u = rng.uniform
    return _Pose(
        zoom=u(0.80, 0.97),
        shift=(u(-0.05, 0.05), u(-0.08, 0.04)),
        rotation=math.radians(u(-4.0, 4.0)),
        inspiration=u(0.95, 1.05),
        level=u(-0.12, 0.0),
        window=u(1.0, 1.2),
        gamma=u(0.8, 1.25),
        blur_px=u(0.0, 0.8),
        noise=u(1.5, 6.0),
        mottle=u(0.004, 0.012),
        heel=(u(-0.04, 0.04), u(-0.04, 0.04)),
    )


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _smoothstep(edge0: float, edge1: float, x: _FloatArray) -> _FloatArray:
    """A C1 step; soft edges everywhere because radiographs have no aliased ones."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass
class _Frame:
    """The working grid and the map between patient coordinates and its pixels.

    Analytic structures (ribs, spine) are evaluated at the patient coordinates `u`, `v` of every
    pixel; outlines (lungs, vessels) are polygons mapped forward to pixels and rasterised by PIL,
    which is cheaper than evaluating them analytically.
    """

    height: int
    width: int
    pose: _Pose
    u: _FloatArray = field(init=False)
    v: _FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.px_per_unit = min(self.height, self.width) / 2.0
        self._cos = math.cos(self.pose.rotation)
        self._sin = math.sin(self.pose.rotation)
        xs = (np.arange(self.width, dtype=np.float32) + 0.5 - self.width / 2) / self.px_per_unit
        ys = (np.arange(self.height, dtype=np.float32) + 0.5 - self.height / 2) / self.px_per_unit
        xs = xs[None, :] - self.pose.shift[0]
        ys = ys[:, None] - self.pose.shift[1]
        zoom = self.pose.zoom
        self.u = ((self._cos * xs + self._sin * ys) / zoom).astype(np.float32)
        self.v = ((-self._sin * xs + self._cos * ys) / zoom).astype(np.float32)

    @property
    def unit_px(self) -> float:
        """Pixels per patient unit, for sizes (blur widths, line widths)."""
        return self.px_per_unit * self.pose.zoom

    def to_pixels(self, points: _FloatArray) -> list[tuple[float, float]]:
        """Patient (u, v) points -> PIL pixel coordinates."""
        zoom = self.pose.zoom
        cx = zoom * (self._cos * points[:, 0] - self._sin * points[:, 1]) + self.pose.shift[0]
        cy = zoom * (self._sin * points[:, 0] + self._cos * points[:, 1]) + self.pose.shift[1]
        px = cx * self.px_per_unit + self.width / 2 - 0.5
        py = cy * self.px_per_unit + self.height / 2 - 0.5
        return list(zip(px.tolist(), py.tolist(), strict=True))

    def polygon(self, points: _FloatArray, edge_units: float) -> _FloatArray:
        """A filled outline with a soft edge `edge_units` wide."""
        canvas = Image.new("F", (self.width, self.height), 0.0)
        ImageDraw.Draw(canvas).polygon(self.to_pixels(points), fill=1.0)
        mask = np.asarray(canvas, dtype=np.float32)
        return _blur(mask, edge_units * self.unit_px)


def _blur(image: _FloatArray, sigma_px: float) -> _FloatArray:
    """Gaussian blur; wide kernels run on a reduced copy because their output is smooth anyway."""
    if sigma_px < 0.2:
        return image
    if sigma_px <= 6.0:
        return ndimage.gaussian_filter(image, sigma_px, mode="nearest")
    factor = int(sigma_px // 3)
    small = Image.fromarray(image).reduce(factor)
    smooth = ndimage.gaussian_filter(np.asarray(small), sigma_px / factor, mode="nearest")
    size = (image.shape[1], image.shape[0])
    return np.asarray(Image.fromarray(smooth).resize(size, Image.Resampling.BILINEAR))


def _chaikin(points: _FloatArray, iterations: int = 3) -> _FloatArray:
    """Corner-cutting smoothing of an open polyline that keeps both end points.

    The lung outlines start and end at the costophrenic angle, so that angle stays sharp while
    the apex, the heart border and the domes become smooth curves.
    """
    for _ in range(iterations):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2), dtype=points.dtype)
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


# --------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------


def _lung_outline(a: Anatomy, side: int, pose: _Pose, jitter: _FloatArray) -> _FloatArray:
    """Closed outline of one lung in patient coordinates, starting at its costophrenic angle.

    `side` is -1 for the patient's right lung (image left) and +1 for the left one, which the
    heart indents. Points are (lateral distance, height) before mirroring.
    """
    w = a.lung_width
    med = a.mediastinum
    if side < 0:
        dome = a.dome_right
        medial = [
            (med + 0.02, -0.60),
            (med, -0.35),
            (med + 0.03, -0.12),
            (a.heart_right - 0.02, 0.08),
            (a.heart_right, a.heart_level),
            (a.heart_right - 0.02, dome + 0.06),
        ]
        dia_start = 0.30
    else:
        dome = a.dome_left
        hl = a.heart_left
        medial = [
            (med + 0.02, -0.60),
            (a.aortic_knob, -0.46),
            (med + 0.05, -0.33),
            (med + 0.10, -0.18),
            (0.5 * (med + hl) + 0.03, -0.02),
            (hl - 0.02, a.heart_level - 0.06),
            (hl, a.heart_level + 0.06),
            (hl - 0.04, dome + 0.02),
        ]
        dia_start = hl + 0.05
    cp = dome + a.cp_depth
    apex = a.apex_y
    lateral = [
        (0.80 * w, cp),
        (0.86 * w, cp - 0.25),
        (0.87 * w, 0.05),
        (0.81 * w, -0.30),
        (0.68 * w, -0.58),
        (0.50 * w, apex + 0.04),
        (0.34 * w, apex),
        (0.20 * w, apex + 0.07),
    ]
    diaphragm = _dome(dia_start, 0.8 * w, dome, cp)
    points = np.array(lateral + medial + diaphragm, dtype=np.float64)
    points[1:-1] += jitter[: len(points) - 2]
    # Heights scale from the apex so inspiration moves the domes, not the apices.
    stretch = a.lung_height * pose.inspiration
    points[:, 1] = apex + (points[:, 1] - apex) * stretch
    points = _chaikin(points)
    points[:, 0] *= side
    return points


def _dome(medial: float, lateral: float, top: float, cp: float) -> list[tuple[float, float]]:
    """Points along a hemidiaphragm: a rounded dome falling steeply into the costophrenic angle."""
    peak = medial + 0.45 * (lateral - medial)
    points = []
    for q in np.linspace(medial, lateral, 7):
        if q <= peak:
            y = top + 0.05 * ((peak - q) / (peak - medial)) ** 2
        else:
            y = top + (cp - top) * ((q - peak) / (lateral - peak)) ** 2.2
        points.append((float(q), float(y)))
    return points


def _body(frame: _Frame, a: Anatomy) -> tuple[_FloatArray, _FloatArray]:
    """Soft-tissue outline (0..1, soft edge) and thickness (0..1) of neck, shoulders and trunk.

    The thickness of an elliptic cross-section falls towards the flanks, which gives the
    brightness falloff towards the body outline that every radiograph shows.
    """
    sh = a.shoulder_y
    bw = a.body_width
    half_width = np.interp(
        frame.v,
        [-2.0, sh - 0.22, sh - 0.15, sh - 0.07, sh, sh + 0.07, sh + 0.16, -0.45, 0.2, 0.8, 2.0],
        [
            0.25,
            0.27,
            0.42,
            0.65 * bw,
            0.82 * bw,
            0.94 * bw,
            0.99 * bw,
            0.92 * bw,
            0.97 * bw,
            0.9 * bw,
            0.88 * bw,
        ],
    ).astype(np.float32)
    excess = np.abs(frame.u) - half_width
    outline = _smoothstep(0.03, -0.04, excess)
    ratio = np.clip(np.abs(frame.u) / (half_width + 0.02), 0.0, 1.0)
    thickness = np.sqrt(1.0 - ratio**2)
    return outline, thickness


def _humeral_heads(frame: _Frame, a: Anatomy) -> _FloatArray:
    """Humeral heads and the lateral ends of the shoulders: bone at the upper corners."""
    q = np.abs(frame.u)
    centre_u, centre_v = 0.98 * a.body_width, a.shoulder_y + 0.12
    r = np.sqrt(((q - centre_u) / 0.13) ** 2 + ((frame.v - centre_v) / 0.15) ** 2)
    return 0.10 * _smoothstep(1.05, 0.85, r) + 0.04 * np.exp(-(((r - 0.93) / 0.07) ** 2))


def _lungs(frame: _Frame, a: Anatomy, pose: _Pose, rng: np.random.Generator) -> _FloatArray:
    """Soft mask 0..1 of both lung fields."""
    detail = np.random.default_rng([a.detail_seed, 0])
    masks = []
    for side in (-1, 1):
        count = 24
        jitter = detail.normal(0.0, 0.012, (count, 2)) + rng.normal(0.0, 0.006, (count, 2))
        outline = _lung_outline(a, side, pose, jitter)
        masks.append(frame.polygon(outline, 0.008))
    return np.clip(masks[0] + masks[1], 0.0, 1.0)


def _ribs(frame: _Frame, a: Anatomy, lung_reach: float) -> _FloatArray:
    """Posterior and anterior ribs as periodic bands in a straightened coordinate.

    Shearing the height by the rib curve makes every posterior rib a horizontal band, so all ribs
    come from one periodic profile instead of a loop over twenty curves.
    """
    q = np.abs(frame.u)
    v = frame.v + np.where(frame.u < 0, 0.0, 0.012).astype(np.float32)
    rel = np.maximum(q - 0.07, 0.0)
    # Upper ribs are shorter and more strongly curved.
    upper = _smoothstep(-0.2, -0.8, v)
    bend = a.rib_curvature * (0.7 + 0.9 * upper)
    # Near the spine a posterior rib rises a little, then it arches down ever more steeply.
    straight = v + a.rib_slope * rel - bend * rel**2 - 0.6 * a.rib_curvature * rel**4
    index = (straight - a.rib_y0) / a.rib_spacing
    index = index - 0.012 * index**2  # the lower posterior ribs sit further apart
    phase = index - np.floor(index)
    width = 0.52
    t = np.clip(phase / width, 0.0, 1.0)
    inside = (phase < width).astype(np.float32)
    bone = np.sqrt(np.clip(np.sin(np.pi * t), 0.0, 1.0)) * inside
    cortex = (np.exp(-((t / 0.10) ** 2)) + np.exp(-(((1.0 - t) / 0.10) ** 2))) * inside
    posterior = 0.06 * bone + 0.04 * cortex
    posterior *= _smoothstep(-0.3, 0.2, index) * _smoothstep(10.6, 9.8, index)
    reach = lung_reach + 0.05
    posterior *= _smoothstep(0.04, 0.10, q) * _smoothstep(reach + 0.04, reach - 0.04, q)

    # Anterior ribs fall towards the midline and are fainter (thinner bone, cartilage medially).
    lateral = np.maximum(reach - q, 0.0)
    straight_a = v - 0.55 * lateral + 0.25 * lateral**2
    index_a = (straight_a - (a.rib_y0 + 0.18)) / (a.rib_spacing * 1.35)
    phase_a = index_a - np.floor(index_a)
    anterior = np.sin(np.pi * np.clip(phase_a / 0.5, 0.0, 1.0)) ** 2 * (phase_a < 0.5)
    anterior = 0.03 * anterior * _smoothstep(-0.2, 0.3, index_a) * _smoothstep(5.5, 4.8, index_a)
    anterior *= _smoothstep(0.18, 0.32, q) * _smoothstep(reach + 0.02, reach - 0.06, q)
    return (posterior + anterior).astype(np.float32)


def _clavicles(frame: _Frame, a: Anatomy) -> _FloatArray:
    """Two gently S-shaped bone bands from the sternal ends to the shoulders.

    The band narrows to rounded ends instead of being cut off, as a bone's outline would.
    """
    q = np.abs(frame.u)
    rel = q - 0.07
    length = 0.82 * a.body_width - 0.07
    s = np.clip(rel / length, 0.0, 1.0)
    centre = a.clavicle_y - a.clavicle_tilt * rel - 0.018 * np.sin(2.0 * np.pi * s)
    # Thick medial end, slender shaft, flattened lateral end.
    thick = 0.040 - 0.014 * s + 0.006 * s**4
    taper = np.sqrt(np.clip(rel / 0.03, 0.0, 1.0) * np.clip((length - rel) / 0.05, 0.0, 1.0))
    d = np.abs(frame.v - centre) / (thick * taper + 1e-4)
    band = np.sqrt(np.clip(1.0 - d**2, 0.0, 1.0)) + 0.5 * np.exp(-(((d - 0.9) / 0.15) ** 2))
    return 0.10 * band * (taper > 0)


def _spine(frame: _Frame, a: Anatomy) -> _FloatArray:
    """Vertebral column with end plates and pedicles; seen mostly above the heart."""
    q = np.abs(frame.u)
    sw = a.spine_width
    column = _smoothstep(sw + 0.012, sw - 0.012, q)
    period = a.rib_spacing * 0.92
    phase = (frame.v - a.rib_y0) / period
    phase = phase - np.floor(phase)
    disc = np.exp(-(((phase - 0.5) / 0.07) ** 2))
    pedicle_d = ((q - 0.65 * sw) / (0.22 * sw)) ** 2 + ((phase - 0.25) / 0.16) ** 2
    pedicles = np.exp(-pedicle_d * 2.0)
    return (column * (0.04 - 0.02 * disc) + 0.02 * pedicles * column).astype(np.float32)


def _airways(frame: _Frame, a: Anatomy) -> _FloatArray:
    """Air column of the trachea and main bronchi (negative density)."""
    carina = -0.32
    tu = frame.u - a.trachea_shift * _smoothstep(carina, -1.0, frame.v)
    trachea = _smoothstep(0.042, 0.028, np.abs(tu)) * _smoothstep(
        carina + 0.02, carina - 0.04, frame.v
    )
    bronchi = np.zeros_like(trachea)
    for side, angle in ((-1, 0.65), (1, 0.85)):
        du, dv = side * math.sin(angle), math.cos(angle)
        along = tu * du + (frame.v - carina) * dv
        across = np.abs(tu * dv - (frame.v - carina) * du)
        bronchi += (
            _smoothstep(0.03, 0.018, across)
            * _smoothstep(-0.01, 0.02, along)
            * _smoothstep(0.16, 0.10, along)
        )
    return -0.05 * np.clip(trachea + bronchi, 0.0, 1.0)


def _heart_and_abdomen(frame: _Frame, a: Anatomy, lung: _FloatArray) -> _FloatArray:
    """Extra density of the heart, the liver below the right dome and the gastric bubble."""
    centre_u = 0.5 * (a.heart_left - a.heart_right)
    half_u = 0.5 * (a.heart_left + a.heart_right)
    d = ((frame.u - centre_u) / half_u) ** 2 + ((frame.v - a.heart_level) / 0.27) ** 2
    heart = 0.05 * _smoothstep(1.1, 0.7, d)
    below = _smoothstep(a.dome_right - 0.05, a.dome_right + 0.15, frame.v)
    liver = 0.04 * below * _smoothstep(0.1, -0.2, frame.u)
    dense = (heart + liver) * (1.0 - lung)
    if a.gastric_bubble > 0:
        gu, gv = a.heart_left + 0.08, a.dome_left + a.gastric_bubble + 0.10
        size = a.gastric_bubble
        g = ((frame.u - gu) / (1.4 * size)) ** 2 + ((frame.v - gv) / size) ** 2
        # Gas rises: a domed roof and a flat air-fluid level below.
        level = _smoothstep(gv + 0.1 * a.gastric_bubble, gv, frame.v)
        dense -= 0.09 * _smoothstep(1.0, 0.5, g) * level
    return dense.astype(np.float32)


def _vessels(frame: _Frame, a: Anatomy, rng: np.random.Generator) -> _FloatArray:
    """Branching pulmonary vessels radiating from the hila, drawn as tapering lines.

    The tree comes from the patient's detail seed (so repeat films show the same pattern) with a
    small per-image wobble. It grows one generation at a time as arrays, because mapping a few
    hundred segments to pixels one by one would cost more than the rest of the anatomy.
    """
    detail = np.random.default_rng([a.detail_seed, 1])
    angles = np.linspace(-1.3, 1.5, 9)
    side = np.repeat([-1.0, 1.0], angles.size)
    hilum_q = a.mediastinum + np.where(side < 0, 0.08, 0.11)
    # Headings are measured from the lateral direction, positive downwards.
    heading = np.tile(angles, 2) + detail.normal(0.0, 0.12, side.size)
    x = side * hilum_q
    y = -0.10 + 0.05 * np.tile(angles, 2)
    length = np.full(side.size, 0.13)
    canvas = Image.new("F", (frame.width, frame.height), 0.0)
    draw = ImageDraw.Draw(canvas)
    scale = frame.unit_px
    for depth in range(5):
        end_x = x + side * np.cos(heading) * length
        end_y = y + np.sin(heading) * length
        wobble = rng.normal(0.0, 0.008, (side.size, 2)) + detail.normal(0.0, 0.012, (side.size, 2))
        points = np.stack(
            [
                np.stack([x, y], axis=1),
                np.stack([(x + end_x) / 2, (y + end_y) / 2], axis=1) + wobble,
                np.stack([end_x, end_y], axis=1),
            ],
            axis=1,
        )
        pixels = frame.to_pixels(points.reshape(-1, 2))
        width = max(1, round(0.022 * 0.7**depth * scale))
        fill = 0.08 * 0.8**depth
        for i in range(side.size):
            draw.line(pixels[3 * i : 3 * i + 3], fill=fill, width=width, joint="curve")
        # Every branch forks in two.
        turn = np.concatenate([-np.ones(side.size), np.ones(side.size)])
        x, y, side = np.tile(end_x, 2), np.tile(end_y, 2), np.tile(side, 2)
        heading = np.tile(heading, 2) + turn * detail.uniform(0.25, 0.6, turn.size)
        length = np.tile(length, 2) * detail.uniform(0.62, 0.8, turn.size)
    vessels = np.asarray(canvas, dtype=np.float32)
    return _blur(vessels, max(0.5, 0.004 * scale))


# --------------------------------------------------------------------------------------------
# Disease
# --------------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> _FloatArray:
    """Band-limited noise with unit spread: the mottle of alveolar filling."""
    noise = _blur(rng.standard_normal(shape, dtype=np.float32), sigma_px)
    return noise / (noise.std() + 1e-6)


def _random_lung_point(
    rng: np.random.Generator, lung: _FloatArray, frame: _Frame
) -> tuple[float, float]:
    """A pixel well inside the lungs, so that lesions are centred on lung, not on the heart."""
    rows, cols = np.nonzero(lung > 0.9)
    if rows.size == 0:
        return frame.height / 2.0, frame.width / 2.0
    pick = rng.integers(rows.size)
    return float(rows[pick]), float(cols[pick])


def _blob(
    frame: _Frame, rng: np.random.Generator, centre: tuple[float, float], radius_px: float
) -> _FloatArray:
    """A soft anisotropic lesion envelope with a randomly oriented major axis."""
    rows = np.arange(frame.height, dtype=np.float32)[:, None] - centre[0]
    cols = np.arange(frame.width, dtype=np.float32)[None, :] - centre[1]
    theta = rng.uniform(0, math.pi)
    ratio = rng.uniform(0.55, 1.0)
    major = cols * math.cos(theta) + rows * math.sin(theta)
    minor = -cols * math.sin(theta) + rows * math.cos(theta)
    r2 = (major / radius_px) ** 2 + (minor / (radius_px * ratio)) ** 2
    return np.exp(-(r2 ** rng.uniform(0.7, 1.1)))


def _opacities(
    frame: _Frame, lung: _FloatArray, rng: np.random.Generator, kind: str
) -> _FloatArray:
    """Fraction 0..1 of lung air replaced by fluid or cells.

    Patterns: lobar (one large dense consolidation, often with a straight fissure border),
    patchy bronchopneumonia (several smaller mottled foci) and diffuse interstitial (reticular,
    perihilar and basal, bilateral), all over a bilateral mottled haze. Bacterial cases lean
    lobar/patchy, viral ones interstitial.
    """
    weights = {"bacteria": [0.45, 0.45, 0.10], "virus": [0.15, 0.40, 0.45]}.get(
        kind, [0.35, 0.40, 0.25]
    )
    pattern = rng.choice(["lobar", "patchy", "interstitial"], p=weights)
    # Mostly clearly visible, sometimes subtle.
    strength = _STRENGTH_MIN + (1.0 - _STRENGTH_MIN) * rng.beta(*_STRENGTH_BETA)
    unit = frame.unit_px
    shape = (frame.height, frame.width)
    mottle = 0.5 + 0.35 * _texture(rng, shape, 0.02 * unit)
    clear = np.ones(shape, dtype=np.float32)
    if pattern == "lobar":
        centre = _random_lung_point(rng, lung, frame)
        env = _blob(frame, rng, centre, rng.uniform(0.16, 0.30) * _LESION_SCALE * unit)
        # A fissure gives one straight, sharp border.
        theta = rng.uniform(0, 2 * math.pi)
        rows = np.arange(frame.height, dtype=np.float32)[:, None] - centre[0]
        cols = np.arange(frame.width, dtype=np.float32)[None, :] - centre[1]
        offset = rng.uniform(0.0, 0.12) * unit
        border = _smoothstep(
            offset + 0.01 * unit,
            offset - 0.01 * unit,
            cols * math.cos(theta) + rows * math.sin(theta),
        )
        if rng.random() < 0.6:
            env = env * border
        amount = np.clip(env * (0.75 + 0.5 * mottle), 0, 1) * rng.uniform(0.65, 0.9)
        clear *= 1.0 - amount
        count_extra = rng.integers(0, 2)
    else:
        count_extra = rng.integers(2, 7) if pattern == "patchy" else rng.integers(0, 2)
    for _ in range(count_extra):
        centre = _random_lung_point(rng, lung, frame)
        env = _blob(frame, rng, centre, rng.uniform(0.07, 0.18) * _LESION_SCALE * unit)
        amount = np.clip(env * (0.4 + 0.9 * mottle), 0, 1) * rng.uniform(0.6, 0.95)
        clear *= 1.0 - amount
    if pattern == "interstitial":
        # Reticular: thin bright lines where band-pass noise crosses zero.
        fine = _texture(rng, shape, 0.011 * unit)
        reticular = np.exp(-(fine**2) / 0.35)
        basal = _smoothstep(-0.5, 0.3, frame.v)
        hilar = np.exp(-(((np.abs(frame.u) - 0.25) / 0.3) ** 2))
        env = np.clip(0.7 * basal + 0.7 * hilar, 0, 1)
        amount = env * (0.45 * mottle + 0.3 * reticular) * rng.uniform(0.7, 1.0)
        clear *= 1.0 - np.clip(amount, 0, 1)
    clear *= 1.0 - _HAZE * rng.uniform(0.5, 1.0) * np.clip(mottle, 0, 1)
    return (1.0 - clear) * strength


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _working_shape(height: int, width: int) -> tuple[int, int]:
    longest = max(height, width)
    work_long = min(max(longest, _WORK_MIN), _WORK_MAX)
    scale = work_long / longest
    return max(8, round(height * scale)), max(8, round(width * scale))


def _density(
    frame: _Frame,
    a: Anatomy,
    pose: _Pose,
    rng: np.random.Generator,
    disease_rng: np.random.Generator | None,
    kind: str,
) -> _FloatArray:
    """Projected density (0 = air, ~0.8 = mediastinum + bone) at working resolution."""
    outline, thickness = _body(frame, a)
    lung = _lungs(frame, a, pose, rng)
    unit = frame.unit_px
    # Thick lung (centre of the field) holds more air than its thin margins.
    depth = _blur(lung, 0.07 * unit)
    # Apices are overlapped by the shoulder girdle and so look less dark.
    apical = 1.0 - 0.3 * _smoothstep(a.apex_y + 0.3, a.apex_y, frame.v)
    air = _AIR * lung * (0.5 + 0.65 * depth) * apical * outline
    q = np.abs(frame.u)
    breast = a.breast * 0.08 * _smoothstep(-0.1, 0.35, frame.v) * _smoothstep(0.3, 0.75, q)
    soft = outline * (a.soft_tissue * (0.08 + 0.66 * thickness**0.75) + breast)
    # Scatter veils the air next to the body, so the outline is never a hard cut to black.
    soft += 0.06 * _blur(outline, 0.12 * unit)
    lung_reach = 0.87 * a.lung_width
    bones = _ribs(frame, a, lung_reach) + _clavicles(frame, a) + _humeral_heads(frame, a)
    # Bone shows best against air; over the mediastinum the film is near saturation anyway.
    bones *= outline * (0.6 + 0.4 * lung)
    hila = (
        0.06
        * lung
        * np.exp(-(((q - a.mediastinum - 0.10) / 0.07) ** 2 + ((frame.v + 0.10) / 0.12) ** 2))
    )
    vessels = _vessels(frame, a, rng) * _smoothstep(0.2, 0.7, lung) * (0.3 + 0.7 * depth)
    # Fine parenchymal markings, so a normal lung is not a flat dark cut-out.
    markings = 0.018 * _texture(rng, lung.shape, 0.01 * unit) * lung
    density = (
        soft
        - air
        + bones
        + _spine(frame, a) * outline
        + _airways(frame, a)
        + _heart_and_abdomen(frame, a, lung) * outline
        + hila
        + vessels
        + markings
    )
    if disease_rng is not None:
        # Consolidation fills air spaces, so it can at most restore soft-tissue density.
        density += air * _opacities(frame, lung, disease_rng, kind)
    heel = pose.heel[0] * frame.u + pose.heel[1] * frame.v
    density += heel * outline
    return density.astype(np.float32)


def shifted_pose(pose: _Pose, strength: float) -> _Pose:
    """The same film taken on other equipment: what `PhantomSpec.test_shift` applies to test.

    `strength` 0 returns `pose` unchanged; 1 is a strong acquisition change: a wider field of
    view (zoom x 0.75), a lateral exposure gradient (heel +0.35 across the half-width), a softer
    detector (+2.5 px blur at working resolution) with twice the noise, and a narrower window
    that saturates the densest bone. Monotone grey-level changes alone (gamma, brightness)
    would not do: histogram equalisation in preprocessing undoes them, so the shift changes
    geometry, sharpness and spatially varying exposure, which survive it. No generator draws:
    a shifted image is the unshifted one's patient and pose, seen differently.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"test_shift must be in [0, 1], got {strength}")
    if strength == 0.0:
        return pose
    s = float(strength)
    return replace(
        pose,
        zoom=pose.zoom * (1.0 - 0.25 * s),
        heel=(pose.heel[0] + 0.35 * s, pose.heel[1] - 0.15 * s),
        blur_px=pose.blur_px + 2.5 * s,
        noise=pose.noise * (1.0 + s),
        window=pose.window * (1.0 - 0.3 * s),
    )


def _to_grey(density: _FloatArray, pose: _Pose) -> _FloatArray:
    """Exposure: window, gamma and a soft shoulder, like a film's characteristic curve."""
    x = np.clip((density - pose.level) / pose.window, 0.0, 1.3)
    x = (1.0 - np.exp(-0.6 * x)) / (1.0 - math.exp(-0.6))
    return np.clip(x, 0.0, 1.0) ** pose.gamma


def _resize(image: _FloatArray, height: int, width: int) -> _FloatArray:
    if image.shape == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def _detector_noise(rng: np.random.Generator, shape: tuple[int, int]) -> _FloatArray:
    """Zero-mean noise of unit spread, triangular rather than Gaussian because two uniform
    bytes are several times cheaper to draw than a normal variate at 2 megapixels."""
    raw = rng.integers(0, 256, size=(*shape, 2), dtype=np.uint8)
    total = raw[..., 0].astype(np.float32) + raw[..., 1]
    return (total - 255.0) * np.float32(1.0 / 104.2)


def _render(
    rng: np.random.Generator,
    height: int,
    width: int,
    kind: str | None,
    anatomy: Anatomy | None,
    shift: float = 0.0,
) -> np.ndarray:
    """Render one image; `kind` None is NORMAL, otherwise the pneumonia type ("any" allowed).

    The disease draws from its own generator, seeded at a fixed point of `rng`, so the same
    generator state renders the same patient and film with and without disease. `shift` is
    the acquisition change of `shifted_pose` (0: none), drawing nothing from `rng`.
    """
    if anatomy is None:
        anatomy = sample_anatomy(rng)
    pose = shifted_pose(_sample_pose(rng), shift)
    disease_seed = int(rng.integers(2**63))
    work_h, work_w = _working_shape(height, width)
    frame = _Frame(work_h, work_w, pose)
    disease_rng = np.random.default_rng(disease_seed) if kind is not None else None
    density = _density(frame, anatomy, pose, rng, disease_rng, kind or "")
    density += pose.mottle * _texture(rng, (work_h, work_w), 1.2)
    density = _blur(density, pose.blur_px)
    grey = _resize(_to_grey(density, pose), height, width)
    # Detector pixels average out when the film is shown small, so small outputs get less noise.
    noise_scale = min(1.0, math.sqrt(max(height, width) / 1000))
    noise = np.float32(pose.noise * noise_scale) * _detector_noise(rng, (height, width))
    noisy = grey * np.float32(255.0) + noise
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def render_radiograph(
    rng: np.random.Generator,
    height: int,
    width: int,
    diseased: bool,
    anatomy: Anatomy | None = None,
) -> np.ndarray:
    """Render one synthetic PA chest radiograph as a uint8 array (height, width).

    With `anatomy` None a new patient is drawn from `rng`. The same generator state with
    `diseased` True and False gives the same film with and without opacities, which is what lets
    tests check that the disease signal sits in the lungs and nowhere else.
    """
    if height < 8 or width < 8:
        raise ValueError(f"radiograph must be at least 8x8 px, got {height}x{width}")
    return _render(rng, height, width, "any" if diseased else None, anatomy)


# --------------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate: images per split and label, image sizes, seed and file details."""

    counts: dict[str, dict[str, int]]
    size_px: tuple[int, int] = (1000, 2000)  # min, max side length
    seed: int = 0
    max_images_per_patient: int = 3
    rgb_fraction: float = 0.05  # share of files saved as RGB (R=G=B), as in the real release
    jpeg_quality: int = 90
    # Acquisition change of the test images only, 0 (none) to 1 (strong; see shifted_pose):
    # a train/test shift like the one between the Kaggle release's train and test images.
    test_shift: float = 0.0


@dataclass(frozen=True)
class _Job:
    """One image to write; everything a worker needs, so no state is shared between processes."""

    path: Path
    image_key: int  # seeds this image's generator
    patient_key: int  # seeds the patient's anatomy
    kind: str | None  # None for NORMAL, "bacteria" or "virus" for PNEUMONIA
    size_px: tuple[int, int]
    rgb_fraction: float
    jpeg_quality: int
    seed: int
    shift: float = 0.0  # acquisition change (shifted_pose): the spec's test_shift in test/


def _validate(spec: PhantomSpec) -> None:
    """Reject specs that would silently produce something other than what was asked."""
    low, high = spec.size_px
    if not 8 <= low <= high:
        raise ValueError(f"size_px must be (min, max) with 8 <= min <= max, got {spec.size_px}")
    if spec.max_images_per_patient < 1:
        raise ValueError(f"max_images_per_patient must be >= 1, got {spec.max_images_per_patient}")
    if not 0.0 <= spec.rgb_fraction <= 1.0:
        raise ValueError(f"rgb_fraction must be in [0, 1], got {spec.rgb_fraction}")
    if not 1 <= spec.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {spec.jpeg_quality}")
    if not 0.0 <= spec.test_shift <= 1.0:
        raise ValueError(f"test_shift must be in [0, 1], got {spec.test_shift}")
    for split, per_label in spec.counts.items():
        unknown = set(per_label) - set(LABELS)
        if unknown:
            raise ValueError(
                f"counts[{split!r}] has unknown labels {sorted(unknown)}; use {LABELS}"
            )
        for label, count in per_label.items():
            if count < 0:
                raise ValueError(f"counts[{split!r}][{label!r}] must be >= 0, got {count}")


def _patient_sizes(rng: np.random.Generator, total: int, max_images: int) -> list[int]:
    """Group `total` images into patients: most have one image, some up to `max_images`."""
    sizes = []
    remaining = total
    while remaining > 0:
        n = 1 if max_images == 1 or rng.random() < 0.7 else int(rng.integers(2, max_images + 1))
        n = min(n, remaining)
        sizes.append(n)
        remaining -= n
    return sizes


def _plan(root: Path, spec: PhantomSpec) -> list[_Job]:
    """Assign patients, names and generator keys to every image.

    Runs serially from its own generator, so the plan (and with it every file) depends only on
    the spec. Patient numbers come from one counter per naming scheme across all splits, which
    keeps every patient in exactly one split and label. `test_shift` changes how the test
    images are rendered, never the plan: train and val are the same files with or without it.
    """
    rng = np.random.default_rng([spec.seed, _PLAN_KEY])
    next_im = int(rng.integers(1, 120))
    next_person = int(rng.integers(1, 20))
    next_number = {"bacteria": int(rng.integers(1, 50)), "virus": int(rng.integers(1, 50))}
    jobs: list[_Job] = []
    patient_key = 0

    def job(path: Path, kind: str | None) -> _Job:
        return _Job(
            path,
            len(jobs),
            patient_key,
            kind,
            spec.size_px,
            spec.rgb_fraction,
            spec.jpeg_quality,
            spec.seed,
            spec.test_shift if split == "test" else 0.0,
        )

    for split, per_label in spec.counts.items():
        for label in LABELS:
            folder = root / split / label
            for n_images in _patient_sizes(
                rng, per_label.get(label, 0), spec.max_images_per_patient
            ):
                if label == "NORMAL":
                    prefix = "NORMAL2-" if rng.random() < 0.3 else ""
                    for i in range(n_images):
                        name = f"{prefix}IM-{next_im:04d}-{i + 1:04d}.jpeg"
                        jobs.append(job(folder / name, None))
                    next_im += int(rng.geometric(0.6))
                else:
                    kind = "bacteria" if rng.random() < 0.65 else "virus"
                    for _ in range(n_images):
                        name = f"person{next_person}_{kind}_{next_number[kind]}.jpeg"
                        jobs.append(job(folder / name, kind))
                        next_number[kind] += int(rng.geometric(0.8))
                    next_person += int(rng.geometric(0.6))
                patient_key += 1
    return jobs


def _image_size(rng: np.random.Generator, size_px: tuple[int, int]) -> tuple[int, int]:
    """Height and width in range, aspect 0.8-1.25 where the range allows it."""
    low, high = size_px
    height = int(rng.integers(low, high + 1))
    aspect = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    width = int(np.clip(round(height * aspect), low, high))
    return height, width


def _write(job: _Job) -> Path:
    """Render and save one image. Top-level so that worker processes can run it."""
    rng = np.random.default_rng([job.seed, _IMAGE_KEY, job.image_key])
    anatomy = sample_anatomy(np.random.default_rng([job.seed, _PATIENT_KEY, job.patient_key]))
    height, width = _image_size(rng, job.size_px)
    as_rgb = rng.random() < job.rgb_fraction
    pixels = _render(rng, height, width, job.kind, anatomy, job.shift)
    image = Image.fromarray(pixels)
    if as_rgb:
        image = image.convert("RGB")
    job.path.parent.mkdir(parents=True, exist_ok=True)
    image.save(job.path, format="JPEG", quality=job.jpeg_quality)
    return job.path


def _readme(spec: PhantomSpec, n_images: int, n_patients: int) -> str:
    lines = [
        "SYNTHETIC PHANTOM DATA - NOT REAL PATIENTS",
        "",
        "Every image in this folder is a synthetic chest-radiograph-like phantom drawn by",
        f"{__name__} (make_phantom_dataset). No image shows a real person; file names only",
        "mimic the Kaggle 'Chest X-Ray Images (Pneumonia)' release so the pipeline can parse",
        "patient IDs. PNEUMONIA phantoms differ from NORMAL ones only by opacities inside the",
        "lung fields. Results obtained on these data say nothing about real radiographs.",
        "",
        f"seed: {spec.seed}",
        f"size_px: {spec.size_px[0]}-{spec.size_px[1]}",
        f"max_images_per_patient: {spec.max_images_per_patient}",
        f"rgb_fraction: {spec.rgb_fraction}",
        f"jpeg_quality: {spec.jpeg_quality}",
        *(
            [f"test_shift: {spec.test_shift} (test images drawn with other acquisition settings)"]
            if spec.test_shift
            else []
        ),
        f"images: {n_images}, patients: {n_patients}",
        "counts:",
    ]
    for split, per_label in spec.counts.items():
        for label in LABELS:
            lines.append(f"  {split}/{label}: {per_label.get(label, 0)}")
    return "\n".join(lines) + "\n"


def make_phantom_dataset(root: Path, spec: PhantomSpec, workers: int = 1) -> list[Path]:
    """Write {root}/{split}/{label}/<name>.jpeg for every image plus {root}/PHANTOM_README.txt
    (cxrlib.data.layout.PHANTOM_NOTE: not counted as data).

    Returns the image paths, sorted. Every split gets a folder for every label (even with a
    count of 0) because the data-set reader requires the same classes in each split.
    """
    _validate(spec)
    root = Path(root)
    jobs = _plan(root, spec)
    for split in spec.counts:
        for label in LABELS:
            (root / split / label).mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        chunk = max(1, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            paths = list(pool.map(_write, jobs, chunksize=chunk))
    else:
        paths = [_write(job) for job in jobs]
    n_patients = len({job.patient_key for job in jobs})
    (root / PHANTOM_NOTE).write_text(_readme(spec, len(jobs), n_patients), encoding="utf-8")
    return sorted(paths)
