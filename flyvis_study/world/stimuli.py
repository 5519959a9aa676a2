"""Visual input: clips of pixel frames rendered onto the hexagonal eye, and the input streams.

Pipeline: clip library (pixel frames, T x H x W in [0, 1]) -> ``render_hex`` (box eye:
each hexal is the mean of a 13 x 13 pixel box centred at row H/2 + trunc(13 (u + v/2)),
column W/2 + 13 v) -> 8 hex augmentations per base clip -> 80/20 split by base clip ->
train stream (clips in an order shuffled by simulation.seed, concatenated with hard cuts,
wrapped to exactly n_frames) and test stream (every test clip once, in library order); with
``simulation.stimulus.blank_fraction`` > 0 each clip of both streams starts with that fraction of
its frames at zero luminance (``blanked``).
The same hexal value drives R1..R8 of its column (see ``photoreceptor_input``).

Clip sources: procedural natural-like movies (default, offline, deterministic from the
stimulus seed), full-field flashes, moving edges, drifting gratings, and a folder of real
video frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

BOX = 13  # pixels per hexal (flyvis box eye)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


# ----------------------------------------------------------------------------- geometry
def frame_shape(extent: int) -> tuple[int, int]:
    """Smallest even (H, W) frame that holds every 13 x 13 box of an extent-n eye, plus a margin."""
    side = 2 * (BOX * extent + BOX // 2 + 1) + 2
    return side, side


def hexal_pixel_centres(columns: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each hexal's box centre in a frame of ``shape``: (C,), (C,)."""
    h, w = shape
    u, v = columns[:, 0].astype(np.float64), columns[:, 1].astype(np.float64)
    rows = h // 2 + np.trunc(BOX * (u + v / 2)).astype(np.int64)
    cols = w // 2 + BOX * columns[:, 1].astype(np.int64)
    return rows, cols


def render_hex(frames: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Box-eye rendering: (T, H, W) pixel frames -> (T, C) hexal means (float32)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    t, h, w = frames.shape
    rows, cols = hexal_pixel_centres(columns, (h, w))
    half = BOX // 2
    if rows.min() - half < 0 or cols.min() - half < 0 or rows.max() + half >= h or cols.max() + half >= w:
        need = frame_shape(int(np.abs(columns).max()))
        raise ValueError(f"frames of {h}x{w} pixels are too small for this eye; need at least "
                         f"{need[0]}x{need[1]}")
    integral = np.zeros((t, h + 1, w + 1))
    integral[:, 1:, 1:] = frames.cumsum(1).cumsum(2)
    r0, r1, c0, c1 = rows - half, rows + half + 1, cols - half, cols + half + 1
    total = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
    return (total / BOX**2).astype(np.float32)


def hex_augmentation_permutations(columns: np.ndarray) -> np.ndarray:
    """(8, C) index maps: augmented[:, perm[k]] = base. Rotations 0, 60, 180, 240 deg x {id, mirror}.

    Rotation by 60 deg: (u, v) -> (-v, u + v); mirror: (u, v) -> (u + v, -v).
    """
    index = {(int(u), int(v)): i for i, (u, v) in enumerate(columns.tolist())}
    perms = []
    for mirror in (False, True):
        for k in (0, 1, 3, 4):
            out = np.empty(len(columns), dtype=np.int64)
            for i, (u, v) in enumerate(columns.tolist()):
                if mirror:
                    u, v = u + v, -v
                for _ in range(k):
                    u, v = -v, u + v
                out[i] = index[(u, v)]
            perms.append(out)
    return np.stack(perms)


def augment(hex_clip: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Apply one column permutation to a (T, C) hexal clip."""
    out = np.empty_like(hex_clip)
    out[:, perm] = hex_clip
    return out


# ----------------------------------------------------------------------------- clip sources
def pink_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Periodic grey texture with a 1/f^2 power spectrum, mean 0.45, sd 0.2, clipped to [0, 1]."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = np.inf
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f
    tex = np.fft.ifft2(spectrum).real
    tex = (tex - tex.mean()) / tex.std()
    return np.clip(0.45 + 0.2 * tex, 0.0, 1.0)


def natural_clip(rng: np.random.Generator, shape: tuple[int, int], n_frames: int) -> np.ndarray:
    """One procedural natural-like clip (n_frames, H, W).

    A 1/f^2 texture viewed through a camera whose velocity changes smoothly (speed 0.1 to
    1 hexal = 1.3 to 13 px per frame), rotating slowly in about a third of the clips, with
    2 to 4 discs (occluders) of uniform luminance moving across the view.
    """
    h, w = shape
    tex = pink_texture(rng)
    size = tex.shape[0]
    speed = rng.uniform(0.1, 1.0) * BOX
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.08, n_frames))
    speeds = speed * np.clip(1 + np.cumsum(rng.normal(0, 0.03, n_frames)), 0.3, 1.7)
    pos = rng.uniform(0, size, 2) + np.cumsum(np.stack([np.sin(heading), np.cos(heading)], 1)
                                              * speeds[:, None], axis=0)
    omega = rng.normal(0, 0.01) if rng.random() < 0.35 else 0.0
    angles = rng.uniform(0, 2 * np.pi) + omega * np.arange(n_frames)
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    rr -= h / 2
    cc -= w / 2
    n_occ = int(rng.integers(2, 5))
    occ_pos = rng.uniform([0, 0], [h, w], size=(n_occ, 2))
    occ_vel = rng.normal(0, 3, size=(n_occ, 2))
    occ_rad = rng.uniform(8, 40, n_occ)
    occ_lum = rng.uniform(0.05, 0.95, n_occ)
    frames = np.empty((n_frames, h, w), dtype=np.float32)
    for t in range(n_frames):
        ca, sa = np.cos(angles[t]), np.sin(angles[t])
        tr = pos[t, 0] + ca * rr - sa * cc
        tc = pos[t, 1] + sa * rr + ca * cc
        img = ndimage.map_coordinates(tex, [tr.ravel(), tc.ravel()], order=1, mode="grid-wrap")
        img = img.reshape(h, w)
        for k in range(n_occ):
            centre = occ_pos[k] + occ_vel[k] * t
            mask = (rr + h / 2 - centre[0]) ** 2 + (cc + w / 2 - centre[1]) ** 2 < occ_rad[k] ** 2
            img[mask] = occ_lum[k]
        frames[t] = img
    return frames


def _clip_lengths(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=n)


def flash_clip(rng: np.random.Generator, shape: tuple[int, int], n_frames: int) -> np.ndarray:
    """Full-field flashes: grey 0.5 baseline with ON/OFF steps of random level and duration."""
    values = np.full(n_frames, 0.5, dtype=np.float32)
    t = int(rng.integers(5, 15))
    while t < n_frames:
        dur = int(rng.integers(5, 25))
        values[t:t + dur] = rng.choice([rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.3)])
        t += dur + int(rng.integers(5, 20))
    return np.broadcast_to(values[:, None, None], (n_frames, *shape)).astype(np.float32)


def moving_edge_clip(rng: np.random.Generator, shape: tuple[int, int], n_frames: int) -> np.ndarray:
    """An ON or OFF edge sweeping across the eye in a random direction (0.2 to 1 hexal/frame)."""
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi)
    proj = (rr - h / 2) * np.sin(theta) + (cc - w / 2) * np.cos(theta)
    speed = rng.uniform(0.2, 1.0) * BOX
    start = -np.abs(proj).max()
    on = rng.random() < 0.5
    bright, dark = (1.0, 0.0) if on else (0.0, 1.0)
    front = start + speed * np.arange(n_frames)
    frames = np.where(proj[None] < front[:, None, None], bright, dark)
    return frames.astype(np.float32)


def grating_clip(rng: np.random.Generator, shape: tuple[int, int], n_frames: int) -> np.ndarray:
    """A drifting sinusoidal grating (period 2 to 8 hexals, 0.1 to 0.5 hexal/frame)."""
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi)
    proj = (rr - h / 2) * np.sin(theta) + (cc - w / 2) * np.cos(theta)
    period = rng.uniform(2, 8) * BOX
    speed = rng.uniform(0.1, 0.5) * BOX
    phase = 2 * np.pi * (proj[None] - speed * np.arange(n_frames)[:, None, None]) / period
    return (0.5 + 0.45 * np.sin(phase)).astype(np.float32)


SYNTHETIC_SOURCES = {
    "natural": natural_clip,
    "flashes": flash_clip,
    "moving_edges": moving_edge_clip,
    "gratings": grating_clip,
}


def load_video_folder(folder: str | Path) -> list[np.ndarray]:
    """Read real video frames: each sub-folder (or the folder itself) is one clip.

    Frames are image files sorted by name, converted to grey levels in [0, 1]. Returns a
    list of (T, H, W) float32 arrays. Raises ``ValueError`` naming the folder when empty.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"stimulus.video_folder: {folder} is not a directory")
    clip_dirs = sorted(p for p in folder.iterdir() if p.is_dir()) or [folder]
    clips = []
    for d in clip_dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        frames = [np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0 for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"stimulus.video_folder: frames in {d} differ in size: {sorted(shapes)}")
        clips.append(np.stack(frames))
    if not clips:
        raise ValueError(f"stimulus.video_folder: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                         f"in {folder} or its sub-folders")
    return clips


# ----------------------------------------------------------------------------- library + streams
@dataclass(frozen=True)
class ClipLibrary:
    """Hexal clips: ``clips[b][k]`` is augmentation k (0..7) of base clip b, shape (T_b, C)."""

    clips: list[list[np.ndarray]]
    test_bases: np.ndarray  # base clip indices held out for the test stream

    @property
    def train_bases(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.clips)), self.test_bases)


def build_clip_library(columns: np.ndarray, source: str = "natural", n_base_clips: int = 70,
                       seed: int = 0, clip_length: tuple[int, int] = (50, 104),
                       test_fraction: float = 0.2, video_folder: str | None = None,
                       progress: bool = False) -> ClipLibrary:
    """Render the base clips onto the eye, augment 8x, and split by base clip (80/20)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5717]))
    extent = int(np.abs(columns).max())
    shape = frame_shape(extent)
    if source == "video_folder":
        base = [render_hex(frames, columns) for frames in load_video_folder(video_folder)]
    else:
        make = SYNTHETIC_SOURCES[source]
        lengths = _clip_lengths(rng, n_base_clips, *clip_length)
        seeds = rng.integers(0, 2**63, size=n_base_clips)
        base = [render_hex(make(np.random.default_rng(int(s)), shape, int(n)), columns)
                for s, n in tqdm(list(zip(seeds, lengths)), desc=f"{source} clips",
                                 disable=not progress, leave=False)]
    perms = hex_augmentation_permutations(columns)
    clips = [[augment(b, p) for p in perms] for b in base]
    n_test = max(1, int(round(test_fraction * len(base)))) if len(base) > 1 else 0
    test_bases = np.sort(rng.permutation(len(base))[:n_test])
    return ClipLibrary(clips=clips, test_bases=test_bases)


@dataclass(frozen=True)
class Streams:
    """Train and test input streams: hexal values (T, C) and the clip id of each frame."""

    train: np.ndarray
    train_clip: np.ndarray
    test: np.ndarray
    test_clip: np.ndarray


def blanked(clip: np.ndarray, blank_fraction: float) -> np.ndarray:
    """``clip`` (T, C) with its first round(blank_fraction * T) frames at zero luminance (a copy
    when any frame is blanked)."""
    n = int(round(blank_fraction * len(clip)))
    if n == 0:
        return clip
    out = np.array(clip, copy=True)
    out[:n] = 0.0
    return out


def build_streams(library: ClipLibrary, n_frames: int, simulation_seed: int, blank_fraction: float = 0.0) -> Streams:
    """Train stream: train clips (all augmentations) in seed-shuffled order, wrapped to n_frames.

    Clip ids are ``8 * base + augmentation``. The test stream plays every test clip once.
    ``blank_fraction`` (``simulation.stimulus.blank_fraction``): every clip, train and test,
    starts with round(blank_fraction * its length) frames at zero luminance instead of its own
    first frames (the clip keeps its length, so the streams keep theirs), so that neurons relax
    toward rest after each cut.
    """
    rng = np.random.default_rng(np.random.SeedSequence([simulation_seed, 0xC11B]))
    train_ids = [8 * b + k for b in library.train_bases for k in range(8)]
    if not train_ids:
        raise ValueError("the clip library has no training clips (need >= 2 base clips)")
    order = rng.permutation(train_ids)
    chunks, ids, total = [], [], 0
    while total < n_frames:
        for cid in order:
            clip = blanked(library.clips[cid // 8][cid % 8], blank_fraction)
            take = min(len(clip), n_frames - total)
            chunks.append(clip[:take])
            ids.append(np.full(take, cid))
            total += take
            if total >= n_frames:
                break
    test_ids = [8 * b + k for b in library.test_bases for k in range(8)]
    test = [blanked(library.clips[c // 8][c % 8], blank_fraction) for c in test_ids]
    return Streams(
        train=np.concatenate(chunks).astype(np.float32),
        train_clip=np.concatenate(ids),
        test=(np.concatenate(test).astype(np.float32) if test
              else np.zeros((0, library.clips[0][0].shape[1]), np.float32)),
        test_clip=(np.concatenate([np.full(len(c), i) for c, i in zip(test, test_ids)]) if test
                   else np.zeros(0, np.int64)),
    )


def photoreceptor_input(hexals, input_nodes, input_column, n_neurons: int, dtype=None):
    """(..., C) hexal values -> (..., N) external input e: e[input_nodes[k]] = hexals[input_column[k]]
    (R1..R8 of a column get its value), 0 elsewhere.

    The one photoreceptor mapping of the package, for numpy arrays (float32 by default) and
    torch tensors (the hexals' dtype and device by default); ``input_column`` is
    ``node_column[input_nodes]`` of the connectome.
    """
    shape = (*hexals.shape[:-1], n_neurons)
    values = hexals[..., input_column]
    if hasattr(hexals, "new_zeros"):  # a torch tensor
        out = hexals.new_zeros(shape, dtype=dtype)
        values = values.to(out.dtype)
    else:
        out = np.zeros(shape, dtype=dtype or np.float32)
    out[..., input_nodes] = values
    return out
