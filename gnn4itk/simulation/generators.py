"""Primary particles for one bunch crossing: Pythia8 minimum bias (+ optional ttbar), or a particle gun.

A generator returns a *particle table* (pandas DataFrame, one row per particle handed to Fatras) in the
column layout of ACTS's ``CsvParticleWriter`` so that the same conversion code serves simulated events and
ACTS CSV files:

* ``particle_id_pv`` (vertex number, 1-based), ``particle_id_sv`` (secondary vertex within it, 0 = the
  collision point), ``particle_id_part`` (counter within the vertex), ``particle_id_gen`` and
  ``particle_id_subpart`` (0 for generator particles; Fatras fills them for its secondaries);
* ``particle_type`` (PDG id), ``q`` [e], ``m`` [GeV];
* ``vx, vy, vz`` [mm], ``vt`` [mm/c]; ``px, py, pz`` [GeV].

Pile-up vertices are drawn from the beam spot (Gaussian, sigma_xy = 12.5 um, sigma_z = 55.5 mm, t = 0).
Everything random derives from ``(seed, event_id)``, so an event does not depend on which process makes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BEAM_SIGMA_XY_MM = 0.0125
BEAM_SIGMA_Z_MM = 55.5
ETA_MAX_KEPT = 5.0  # the Generic detector ends at |eta| ~ 4; particles beyond 5 cannot leave hits
DISPLACED_VERTEX_MM = 1e-3  # production points further than 1 um from the collision are secondary vertices

PARTICLE_TABLE_COLUMNS = [
    "particle_id_pv",
    "particle_id_sv",
    "particle_id_part",
    "particle_id_gen",
    "particle_id_subpart",
    "particle_type",
    "q",
    "m",
    "vx",
    "vy",
    "vz",
    "vt",
    "px",
    "py",
    "pz",
]

# Particle gun: about 6 charged particles per unit pseudorapidity per vertex over |eta| < 4, with the
# species mix of soft LHC collisions (mostly pions) and a falling pT spectrum of mean ~0.5 GeV.
GUN_CHARGED_PER_ETA = 6.0
GUN_ETA_MAX = 4.0
GUN_SPECIES = [(211, 0.13957, 0.80), (321, 0.49368, 0.12), (2212, 0.93827, 0.08)]  # pdg, mass, fraction
GUN_PT_SHAPE, GUN_PT_SCALE = 2.0, 0.25  # Gamma(2, 0.25 GeV): mode 0.25, mean 0.5 GeV
GUN_PT_MIN = 0.05
# Hard gun (``gun_pt_min`` set): pT = pt_min * (1 + Pareto(1.5)), a spectrum falling like pT^-2.5 above pt_min,
# close to that of charged particles above 1 GeV at the LHC but with more high-pT tracks. Module maps need
# many particles of the kind whose edges they must cover; such a gun makes them ~10x cheaper than pile-up.
GUN_HARD_PT_INDEX = 1.5


def event_rng(seed: int, event_id: int, stream: int = 0) -> np.random.Generator:
    """A numpy generator that depends only on (seed, event_id, stream)."""
    return np.random.default_rng([int(seed), int(event_id), int(stream)])


def beam_spot_vertices(rng: np.random.Generator, n: int) -> np.ndarray:
    """Collision points, float64 [n, 4] = (x, y, z, t) in mm, from the beam spot."""
    vertices = np.zeros((n, 4))
    vertices[:, 0:2] = rng.normal(0.0, BEAM_SIGMA_XY_MM, size=(n, 2))
    vertices[:, 2] = rng.normal(0.0, BEAM_SIGMA_Z_MM, size=n)
    return vertices


def _table(columns: dict) -> pd.DataFrame:
    table = pd.DataFrame(columns)
    for name in PARTICLE_TABLE_COLUMNS[:5]:
        table[name] = table[name].astype(np.int64)
    table["particle_type"] = table["particle_type"].astype(np.int64)
    return table[PARTICLE_TABLE_COLUMNS]


def gun_vertex_columns(
    rng: np.random.Generator, vertex: np.ndarray, vertex_number: int, pt_min: float | None = None
) -> dict:
    """Particles from one collision point (particle gun), as the particle table's columns.

    A crossing joins the columns of all its vertices into one table (a DataFrame per vertex cost ~3 ms,
    0.6 s per gun event of 200 vertices).

    Args:
        pt_min: ``None`` for the soft-QCD-like spectrum (mean 0.5 GeV); otherwise the hard spectrum
            ``pt_min * (1 + Pareto(1.5))`` [GeV], for module-map statistics of high-pT tracks.

    Returns:
        {column of :data:`PARTICLE_TABLE_COLUMNS`: array [n]}.
    """
    n = rng.poisson(GUN_CHARGED_PER_ETA * 2 * GUN_ETA_MAX)
    species = rng.choice(len(GUN_SPECIES), size=n, p=[s[2] for s in GUN_SPECIES])
    pdg = np.array([s[0] for s in GUN_SPECIES])[species] * rng.choice([-1, 1], size=n)
    mass = np.array([s[1] for s in GUN_SPECIES])[species]
    if pt_min is None:
        pt = GUN_PT_MIN + rng.gamma(GUN_PT_SHAPE, GUN_PT_SCALE, size=n)
    else:
        pt = pt_min * (1.0 + rng.pareto(GUN_HARD_PT_INDEX, size=n))
    eta = rng.uniform(-GUN_ETA_MAX, GUN_ETA_MAX, size=n)
    phi = rng.uniform(-np.pi, np.pi, size=n)
    return {
        "particle_id_pv": np.full(n, vertex_number),
        "particle_id_sv": np.zeros(n),
        "particle_id_part": np.arange(1, n + 1),
        "particle_id_gen": np.zeros(n),
        "particle_id_subpart": np.zeros(n),
        "particle_type": pdg,
        "q": np.sign(pdg).astype(np.float64),
        "m": mass,
        "vx": np.full(n, vertex[0]),
        "vy": np.full(n, vertex[1]),
        "vz": np.full(n, vertex[2]),
        "vt": np.full(n, vertex[3]),
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
    }


class Pythia8Source:
    """One Pythia8 (``pythia8mc``) instance for a process, re-seeded for every vertex it makes.

    The multiparton-interaction tables that Pythia integrates at initialisation (5-25 s) are cached on disk
    (``cache_dir``, default ``$GNN4ITK_CACHE_DIR`` or ``~/.cache/gnn4itk``), keyed by the Pythia version and
    settings. Pythia always initialises *from the file* (it is made first if missing), because tables read
    back from text differ in the last digits from freshly integrated ones: a run with a fresh cache must
    give the same events as a run with an old one.

    Args:
        process: ``"minbias"`` (SoftQCD:inelastic, 14 TeV) or ``"ttbar"`` (Top:gg2ttbar, Top:qqbar2ttbar).
        cache_dir: where the initialisation tables are kept.
    """

    SETTINGS = {
        "minbias": ["SoftQCD:inelastic = on"],
        "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    }
    COMMON = ["Beams:eCM = 14000.", "Print:quiet = on", "Random:setSeed = on", "Random:seed = 1"]

    def __init__(self, process: str, cache_dir: str | Path | None = None):
        if process not in self.SETTINGS:
            raise ValueError(f"unknown Pythia8 process {process!r}; known: {sorted(self.SETTINGS)}")
        self.process = process
        settings = self.COMMON + self.SETTINGS[process]
        init_file = self._init_file(settings, cache_dir)
        if not init_file.exists():
            partial = init_file.with_suffix(f".{os.getpid()}.tmp")
            save = ["MultipartonInteractions:reuseInit = 1", f"MultipartonInteractions:initFile = {partial}"]
            self._make_pythia(settings, save)
            os.replace(partial, init_file)  # atomic: a concurrent run never reads half a file
        self.pythia = self._make_pythia(
            settings, ["MultipartonInteractions:reuseInit = 2", f"MultipartonInteractions:initFile = {init_file}"]
        )

    @staticmethod
    def _make_pythia(settings: list[str], extra: list[str]):
        import pythia8mc

        pythia = pythia8mc.Pythia("", False)
        for line in settings + extra:
            if not pythia.readString(line):
                raise RuntimeError(f"Pythia8 rejected the setting {line!r}")
        if not pythia.init():
            raise RuntimeError(f"Pythia8 initialisation failed with settings {settings + extra}")
        return pythia

    @staticmethod
    def _init_file(settings: list[str], cache_dir) -> Path:
        import pythia8mc

        version = pythia8mc.Pythia("", False).parm("Pythia:versionNumber")
        key = hashlib.sha1(json.dumps([version, settings]).encode()).hexdigest()[:16]
        root = Path(cache_dir or os.environ.get("GNN4ITK_CACHE_DIR") or Path.home() / ".cache" / "gnn4itk")
        try:
            (root / "pythia8").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RuntimeError(
                f"cannot create the Pythia8 cache directory {root / 'pythia8'} ({error}); "
                "set GNN4ITK_CACHE_DIR to a writable directory"
            ) from error
        return root / "pythia8" / f"mpi-init-{key}.dat"

    def restart(self) -> None:
        """Initialise again from the cache file: forget everything earlier events changed (e.g. the cross-section
        maxima Pythia raises when they are violated), so that an event never depends on the ones before it."""
        if not self.pythia.init():
            raise RuntimeError(f"Pythia8 re-initialisation failed for {self.process}")

    def vertex(self, rng: np.random.Generator, vertex: np.ndarray, vertex_number: int) -> pd.DataFrame:
        """Final-state particles of one collision placed at ``vertex`` (float [4], mm)."""
        self.pythia.rndm.init(int(rng.integers(1, 900_000_000)))
        while not self.pythia.next():  # a failed event is rare; Pythia asks to try again
            pass
        rows = []
        event = self.pythia.event
        for i in range(event.size()):
            particle = event[i]
            if not particle.isFinal() or abs(particle.eta()) > ETA_MAX_KEPT:
                continue
            charge = particle.charge()
            # Fatras leaves hits from charged particles and converts photons; other neutrals never leave hits.
            if charge == 0 and particle.id() != 22:
                continue
            rows.append(
                (particle.id(), charge, particle.m(), particle.xProd(), particle.yProd(), particle.zProd(),
                 particle.tProd(), particle.px(), particle.py(), particle.pz())
            )
        data = np.array(rows, dtype=np.float64).reshape(-1, 10)
        offsets = data[:, 3:7]
        # Particles born away from the collision point (K0s, Lambda, b/c-hadron decays) belong to secondary
        # vertices, numbered by first appearance.
        displaced = np.linalg.norm(offsets[:, :3], axis=1) > DISPLACED_VERTEX_MM
        secondary = np.zeros(len(data), dtype=np.int64)
        if displaced.any():
            _, first, inverse = np.unique(offsets[displaced], axis=0, return_index=True, return_inverse=True)
            rank = np.argsort(np.argsort(first))
            secondary[displaced] = rank[inverse.ravel()] + 1
        position = offsets + vertex[None, :]
        n = len(data)
        return _table(
            {
                "particle_id_pv": np.full(n, vertex_number),
                "particle_id_sv": secondary,
                "particle_id_part": np.arange(1, n + 1),
                "particle_id_gen": np.zeros(n),
                "particle_id_subpart": np.zeros(n),
                "particle_type": data[:, 0].astype(np.int64),
                "q": data[:, 1],
                "m": data[:, 2],
                "vx": position[:, 0],
                "vy": position[:, 1],
                "vz": position[:, 2],
                "vt": position[:, 3],
                "px": data[:, 7],
                "py": data[:, 8],
                "pz": data[:, 9],
            }
        )


def pythia8_available() -> bool:
    """Whether ``pythia8mc`` can be imported."""
    try:
        import pythia8mc  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class GeneratorConfig:
    """What one bunch crossing contains.

    Attributes:
        pileup: mean number of minimum-bias vertices (Poisson).
        hard_scatter: ``"none"`` or ``"ttbar"`` (needs pythia8mc).
        generator: ``"pythia8"``, ``"gun"`` or ``"auto"`` (pythia8 when importable).
        seed: master seed.
        gun_pt_min: gun only: ``None`` for the soft spectrum, else the hard spectrum above this pT [GeV].
    """

    pileup: float = 200.0
    hard_scatter: str = "none"
    generator: str = "auto"
    seed: int = 1
    gun_pt_min: float | None = None

    def resolved_generator(self) -> str:
        if self.generator == "auto":
            return "pythia8" if pythia8_available() else "gun"
        if self.generator not in ("pythia8", "gun"):
            raise ValueError(f"unknown generator {self.generator!r}; use pythia8, gun or auto")
        if self.generator == "pythia8" and not pythia8_available():
            raise ValueError("generator pythia8 requested but pythia8mc is not importable (pip install pythia8mc)")
        return self.generator

    def validate(self) -> None:
        if not np.isfinite(self.pileup) or self.pileup < 0:
            raise ValueError(f"pileup must be a finite number >= 0, got {self.pileup}")
        if self.hard_scatter not in ("none", "ttbar"):
            raise ValueError(f"hard scatter must be 'none' or 'ttbar', got {self.hard_scatter!r}")
        if self.hard_scatter == "ttbar" and not pythia8_available():
            raise ValueError("--hard-scatter ttbar needs pythia8mc, which is not importable")
        if self.hard_scatter == "none" and self.pileup == 0:
            raise ValueError("nothing to simulate: pileup is 0 and there is no hard scatter")
        if self.gun_pt_min is not None:
            if self.resolved_generator() != "gun":
                raise ValueError("a gun pT minimum needs the particle gun (--generator gun)")
            if not np.isfinite(self.gun_pt_min) or self.gun_pt_min <= 0:
                raise ValueError(f"gun pT minimum must be a finite number > 0 GeV, got {self.gun_pt_min}")
        self.resolved_generator()


def describe_generator(config: GeneratorConfig) -> str:
    """Human-readable generator name, as stored in event metadata and run summaries."""
    if config.resolved_generator() == "pythia8":
        return "pythia8 SoftQCD:inelastic"
    if config.gun_pt_min is None:
        return "particle gun"
    return f"particle gun, pT >= {config.gun_pt_min:g} GeV"


class CrossingGenerator:
    """Makes the primary particles of bunch crossings; holds the Pythia8 instances (slow to initialise)."""

    def __init__(self, config: GeneratorConfig):
        config.validate()
        self.config = config
        self.generator = config.resolved_generator()
        self.description = describe_generator(config)  # once: it resolves the generator (an import check)
        self._minbias = Pythia8Source("minbias") if self.generator == "pythia8" and config.pileup > 0 else None
        self._hard = Pythia8Source("ttbar") if config.hard_scatter == "ttbar" else None

    def __call__(self, event_id: int) -> tuple[pd.DataFrame, dict]:
        """Particles of crossing ``event_id`` and a description of it (vertex counts, generator)."""
        rng = event_rng(self.config.seed, event_id)
        for source in (self._hard, self._minbias):
            if source is not None:
                source.restart()
        n_pileup = int(rng.poisson(self.config.pileup))
        n_hard = 1 if self._hard is not None else 0
        vertices = beam_spot_vertices(rng, n_hard + n_pileup)
        tables, gun = [], []
        if self._hard is not None:
            tables.append(self._hard.vertex(rng, vertices[0], 1))
        for k in range(n_pileup):
            number = n_hard + k + 1
            if self._minbias is not None:
                tables.append(self._minbias.vertex(rng, vertices[number - 1], number))
            else:
                gun.append(gun_vertex_columns(rng, vertices[number - 1], number, self.config.gun_pt_min))
        if gun:  # after the hard scatter, in vertex order, as one table
            tables.append(_table({c: np.concatenate([columns[c] for columns in gun]) for c in PARTICLE_TABLE_COLUMNS}))
        particles = pd.concat(tables, ignore_index=True) if tables else _table({c: [] for c in PARTICLE_TABLE_COLUMNS})
        info = {
            "generator": self.description,
            "hard_scatter": self.config.hard_scatter,
            "pileup_mean": float(self.config.pileup),
            "pileup_vertices": n_pileup,
            "primary_vertices": n_hard + n_pileup,
            "seed": int(self.config.seed),
        }
        return particles, info
