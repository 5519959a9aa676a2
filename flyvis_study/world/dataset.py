"""Simulated datasets: generation, on-disk cache, memory-mapped reads.

A dataset holds, per split (train, test): voltage v (T, N), derivative y (T, N), hexal
stimulus (T, C) and clip id (T,); plus static arrays (connectome, ground truth) and
``meta.json`` (resolved simulation config, counts, diagnostics, timings).

Cache key = sha256 of (simulation config, ground-truth parameters, format version, generating
device type: CPU and CUDA noise streams differ); the simulation seed is part of the config.
Generation writes into a temporary sibling folder and renames it into place at the end, so a
killed generation never leaves a folder that looks complete (a folder is complete iff it has
``meta.json``). One process generates a given dataset at a time: it holds ``<key>.lock``
(``flyvis_study.locks``: host, PID namespace, PID, heartbeat), and others sharing the cache,
on this host or another, wait for it and then read its result. Only the lock holder removes
temporary folders of that key (left by dead generations). Arrays are plain ``.npy`` files
read with ``mmap_mode='r'``.

Integrity: ``meta.json`` lists every file's size and sha256 (``files``); ``get_dataset``
verifies them before use, and a folder that fails (a changed byte, a truncated array, a file
missing) is regenerated, with one ``IntegrityWarning`` naming the file; a folder made before
manifests existed is regenerated with a log message only (it is not damaged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from flyvis_study.atomic import atomic_path
from flyvis_study.config import SimulationConfig, drop_later_defaults
from flyvis_study.integrity import manifest, repaired, verify, verify_manifest
from flyvis_study.locks import FileLock
from flyvis_study.world.connectome import Connectome, cached_connectome
from flyvis_study.world.connectome_file import cache_dir
from flyvis_study.world.diagnostics import activity_summary, effective_ranks
from flyvis_study.world.flyvis_models import flyvis_model_params
from flyvis_study.world.ground_truth import (
    GroundTruth,
    GroundTruthParams,
    instantiate,
    load_flyvis_checkpoint,
    load_params,
    save_params,
)
from flyvis_study.world.simulator import Simulator
from flyvis_study.world.stimuli import build_clip_library, build_streams
from flyvis_study.world.synthetic import SYNTHETIC_VERSION, synthetic_ground_truth

FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def resolve_ground_truth(sim: SimulationConfig, connectome: Connectome,
                         root: Path | None = None) -> GroundTruthParams:
    """Ground-truth parameters named by the simulation config.

    Calibrated synthetic parameters are cached as JSON under ``root/ground_truth`` (the
    calibration runs probe simulations), keyed by seed, extent, target abscissa and version,
    with a sha256 sidecar (``integrity``): a file whose bytes are not those written (edited,
    truncated) is recalibrated with one ``IntegrityWarning``, never used.
    """
    gt = sim.ground_truth
    if gt.source == "checkpoint":
        return load_flyvis_checkpoint(gt.checkpoint)
    if gt.source == "flyvis":
        return flyvis_model_params(gt.model)
    root = Path(root) if root is not None else cache_dir() / "datasets"
    path = root / "ground_truth" / (f"synthetic-v{SYNTHETIC_VERSION}-seed{gt.seed}-extent{sim.extent}"
                                    f"-abscissa{gt.target_abscissa:g}.json")
    if path.is_file():
        reason = verify(path)  # the bytes written at calibration, or recalibrate: never an edited file
        if reason == "no checksum":  # cached before checksums existed: not damaged, only unverifiable
            log.info("ground-truth file %s predates checksums; recalibrating it", path)
        elif reason is not None:
            repaired(f"ground-truth file {path}: {reason}; recalibrating", stacklevel=2)
        else:
            try:
                return load_params(path)
            except (OSError, ValueError, KeyError, TypeError) as err:
                repaired(f"ground-truth file {path}: unreadable ({type(err).__name__}); recalibrating", stacklevel=2)
    params = synthetic_ground_truth(connectome, seed=gt.seed, target_abscissa=gt.target_abscissa)
    with atomic_path(path, checksum=True) as tmp:
        save_params(params, tmp)
    return params


def dataset_key(sim: SimulationConfig, params: GroundTruthParams, device: str = "cpu") -> str:
    """sha256 of (format version, simulation config, ground-truth parameters, generating device type).

    The device type is part of the key because CPU and CUDA draw different noise streams
    from the same seed: a dataset generated on a GPU is never reused by a CPU run.
    """
    sim_json = drop_later_defaults(sim.model_dump(mode="json"), ("simulation",))  # older keys stay valid
    sim_json["ground_truth"].pop("checkpoint", None)  # identified by content below
    if sim.ground_truth.source != "flyvis":  # keys from before the model id existed stay valid
        sim_json["ground_truth"].pop("model", None)
    payload = json.dumps({"v": FORMAT_VERSION, "simulation": sim_json, "device": torch.device(device).type,
                          "ground_truth": {k: v for k, v in params.to_json().items() if k != "info"}},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class _NpyWriter:
    """Sequential writer of a float32/int64 .npy file of known shape (no memory map)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str):
        self.fh = open(path, "wb")
        np.lib.format.write_array_header_2_0(
            self.fh, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
        self.dtype = np.dtype(dtype)

    def write(self, block: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self.fh.close()


@dataclass
class Dataset:
    """A complete cached dataset, arrays memory-mapped read-only."""

    path: Path
    meta: dict
    connectome: Connectome
    ground_truth: GroundTruth

    def array(self, name: str) -> np.ndarray:
        """``{split}_{v,y,stimulus,clip}`` or ``{split}_finite`` as a read-only memory map."""
        return np.load(self.path / f"{name}.npy", mmap_mode="r")

    @property
    def n_train(self) -> int:
        return int(self.meta["n_frames"]["train"])

    @property
    def n_test(self) -> int:
        return int(self.meta["n_frames"]["test"])

    def to_pyg(self):
        """The connectome as a ``torch_geometric.data.Data`` with the ground truth on it:
        ``edge_attr`` (E, 1) the true W, ``V_rest`` and ``tau`` (N,) per neuron
        (``Connectome.to_pyg``)."""
        graph = self.connectome.to_pyg(W=self.ground_truth.W)
        graph.V_rest = torch.from_numpy(np.asarray(self.ground_truth.V_rest, dtype=np.float32).copy())
        graph.tau = torch.from_numpy(np.asarray(self.ground_truth.tau, dtype=np.float32).copy())
        graph.ground_truth = self.meta["ground_truth_source"]
        return graph


def _generate(sim: SimulationConfig, connectome: Connectome, params: GroundTruthParams,
              folder: Path, device: str, progress: bool) -> dict:
    t_start = time.perf_counter()
    gt = instantiate(params, connectome)
    st = sim.stimulus
    library = build_clip_library(connectome.columns, source=st.source, n_base_clips=st.n_base_clips,
                                 seed=st.stimulus_seed, clip_length=(st.clip_length_min, st.clip_length_max),
                                 test_fraction=st.test_fraction, video_folder=st.video_folder,
                                 progress=progress)
    streams = build_streams(library, sim.n_frames, sim.seed, blank_fraction=st.blank_fraction)
    t_stim = time.perf_counter() - t_start

    simulator = Simulator(connectome, gt, dt=sim.dt, noise_level=sim.noise_model_level, device=device)
    v0 = simulator.initial_state()
    gen = torch.Generator(device=simulator.device)
    gen.manual_seed(int(np.random.SeedSequence([sim.seed, 0x0DE]).generate_state(1)[0]))
    n = connectome.n_neurons
    stats = {}
    t_sim = time.perf_counter()
    with tqdm(total=len(streams.train) + len(streams.test), desc="simulate", unit="frame",
              disable=not progress, leave=False) as bar:
        for split, hexals, clip in (("train", streams.train, streams.train_clip),
                                    ("test", streams.test, streams.test_clip)):
            T = hexals.shape[0]
            np.save(folder / f"{split}_stimulus.npy", hexals)
            np.save(folder / f"{split}_clip.npy", clip)
            wv = _NpyWriter(folder / f"{split}_v.npy", (T, n), "float32")
            wy = _NpyWriter(folder / f"{split}_y.npy", (T, n), "float32")
            finite = np.zeros(T, dtype=bool)
            sample_idx = np.linspace(0, T - 1, min(T, 2000)).astype(np.int64)
            sample = np.zeros((sample_idx.size, n), dtype=np.float32)
            s1 = np.zeros(n)
            s2 = np.zeros(n)
            vmin = ymin = np.inf
            vmax = ymax = -np.inf
            state = v0  # reset to the initial state before each split
            for t0, v, y in simulator.run(hexals, state, gen):
                wv.write(v)
                wy.write(y)
                t1 = t0 + len(v)
                ok = np.isfinite(v).all(1) & np.isfinite(y).all(1)
                finite[t0:t1] = ok
                if ok.any():
                    vmin, vmax = min(vmin, float(v[ok].min())), max(vmax, float(v[ok].max()))
                    ymin, ymax = min(ymin, float(y[ok].min())), max(ymax, float(y[ok].max()))
                    s1 += v[ok].sum(0, dtype=np.float64)
                    s2 += (v[ok].astype(np.float64) ** 2).sum(0)
                sel = (sample_idx >= t0) & (sample_idx < t1)
                sample[sel] = v[sample_idx[sel] - t0]
                bar.update(len(v))
            wv.close()
            wy.close()
            np.save(folder / f"{split}_finite.npy", finite)
            k = max(int(finite.sum()), 1)
            mean = s1 / k
            std = np.sqrt(np.maximum(s2 / k - mean**2, 0) * k / max(k - 1, 1))
            stats[split] = {
                "n_frames": T, "n_nonfinite_frames": int((~finite).sum()),
                "v_range": [vmin, vmax], "y_range": [ymin, ymax],
                "effective_rank_input": effective_ranks(hexals),
                "effective_rank_activity": effective_ranks(sample[np.isfinite(sample).all(1)]),
                **({"activity": activity_summary(mean, std, connectome)} if split == "train" else {}),
            }
            if split == "train":
                np.save(folder / "train_v_mean.npy", mean.astype(np.float32))
                np.save(folder / "train_v_std.npy", std.astype(np.float32))
    t_sim = time.perf_counter() - t_sim
    np.savez(folder / "static.npz", V_rest=gt.V_rest, tau=gt.tau, W=gt.W)
    save_params(params, folder / "ground_truth.json")
    return {
        "format_version": FORMAT_VERSION,
        "simulation": sim.model_dump(mode="json"),
        "ground_truth_source": params.source,
        "ground_truth_info": params.info,
        "counts": connectome.counts(),
        "n_frames": {"train": len(streams.train), "test": len(streams.test)},
        "n_base_clips": {"train": int(len(library.train_bases)), "test": int(len(library.test_bases))},
        "diagnostics": stats,
        "timing_s": {"stimulus": t_stim, "simulation": t_sim, "total": time.perf_counter() - t_start},
        "device": str(simulator.device),
    }


def _load(folder: Path, connectome: Connectome) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    params = load_params(folder / "ground_truth.json")
    static = np.load(folder / "static.npz")
    gt = GroundTruth(params=params, V_rest=static["V_rest"], tau=static["tau"], W=static["W"])
    return Dataset(path=folder, meta=meta, connectome=connectome, ground_truth=gt)


def get_dataset(sim: SimulationConfig, root: str | Path | None = None, device: str = "cpu",
                progress: bool = False, regenerate: bool = False, lock_timeout: float | None = None) -> Dataset:
    """Return the cached dataset for ``sim``, verified, generating it (atomically) on a miss.

    ``lock_timeout``: seconds to wait for another process generating the same dataset
    (None: as long as it lives); ``locks.LockHeld`` when it is still busy after that.
    """
    connectome = cached_connectome(sim.extent)
    root = Path(root) if root is not None else cache_dir() / "datasets"
    params = resolve_ground_truth(sim, connectome, root)
    folder = root / dataset_key(sim, params, device)
    if not regenerate and _usable(folder, warn=False):
        return _load(folder, connectome)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f"{folder.name}.lock", purpose=f"generation of dataset {folder.name}",
                  timeout=lock_timeout):
        if not regenerate and _usable(folder, warn=True):  # made (or found good) while we waited
            return _load(folder, connectome)
        for stale in root.glob(f"{folder.name}.tmp-*"):  # we hold the key's lock: nobody writes these
            shutil.rmtree(stale, ignore_errors=True)
        if folder.exists():  # incomplete, failed verification, or forced regeneration
            shutil.rmtree(folder)
        tmp = root / f"{folder.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        log.info("generating dataset %s", folder)
        try:
            meta = _generate(sim, connectome, params, tmp, device, progress)
            meta["key"] = folder.name
            meta["files"] = manifest(tmp, sorted(p.name for p in tmp.iterdir()))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _load(folder, connectome)


def _usable(folder: Path, warn: bool) -> bool:
    """True when ``folder`` is a complete dataset whose files match its manifest."""
    if not (folder / "meta.json").is_file():
        return False
    try:
        files = json.loads((folder / "meta.json").read_text()).get("files")
    except (OSError, ValueError):
        bad = ("meta.json", "unreadable")
    else:
        if not files:  # made before manifests existed: not damaged, only unverifiable
            log.info("dataset %s predates file checksums; regenerating it", folder)
            return False
        bad = verify_manifest(folder, files)
    if bad is None:
        return True
    if warn:
        repaired(f"dataset file {folder / bad[0]}: {bad[1]}; regenerating the dataset", stacklevel=3)
    return False
