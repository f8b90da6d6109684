"""Pictures for `s4s-export eval --plot out.png`: quality vs NFE per solver, and a sample grid at one NFE.

The chart needs matplotlib, an optional extra (`pip install 's4s-export[plot]'`): drawing axes,
ticks and a legend by hand would mean shipping a font and a plotting library of our own. The
sample grid needs only numpy and the runtime's PNG writer. `--plot` is checked before any sampling,
so a missing matplotlib fails fast with the install line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .denoiser import Denoiser
from .errors import S4SError
from .fileio import atomic_write
from .heldout import HeldOut, decode, run_solver
from .runtime.images import make_grid, to_uint8, write_png
from .solver_ref import ResolvedSolver
from .solverfile import load_solver_file
from .solvers import SOLVERS
from .teacher import TeacherSpec

GRID_SAMPLES = 8
GRID_MIN_PIXELS = 64  # small images are enlarged (nearest neighbour) to at least this many pixels
GRID_PAD = 6  # pixels between grid cells
LABEL_WIDTH = 200  # pixels of the row-name strip left of the grid
LABEL_CHARS = 34  # longer row names keep their end (a solver file's path ends in its name)


def require_matplotlib() -> None:
    """S4SError with the install line when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise S4SError("--plot draws its chart with matplotlib, which is not installed; install it with "
                       "`pip install 's4s-export[plot]'` (or `pip install matplotlib`), or leave out --plot") from None


def grid_path(path: str | Path) -> Path:
    """Where the sample grid goes beside the chart: out.png -> out-samples.png."""
    path = Path(path)
    return path.with_name(f"{path.stem}-samples{path.suffix or '.png'}")


def series_name(label: str) -> str:
    """The line a result belongs to: a classical solver's name, or a solver file's method and folder."""
    if label in SOLVERS:
        return label
    method = load_solver_file(label).info.get("method", "solver file")
    return f"{method} ({Path(label).parent})"


def quality_plot(report: dict, path: str | Path) -> Path:
    """One panel per metric: the metric (log scale) against NFE, one line per solver."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = list(dict.fromkeys(k for r in report["results"] for k in r["metrics"]))
    if not keys:
        raise S4SError("--plot has nothing to draw: no metric ran (see the skipped metrics)")
    series: dict[str, list[tuple[int, dict]]] = {}
    for r in report["results"]:
        series.setdefault(series_name(r["solver"]), []).append((r["nfe"], r["metrics"]))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, points in series.items():
            pts = sorted((n, m[key]) for n, m in points if key in m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("NFE")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key.replace("_", " "))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['model']['name']}: {report['samples']} held-out samples, distance to the "
                 f"{target_label(report)}", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return Path(path)


def target_label(report: dict) -> str:
    """What the solvers were measured against: `teacher unipc3 NFE 20 (logsnr)` or `reference ODE solution`."""
    teacher = TeacherSpec(**report["teacher"])
    return teacher.label() if teacher.is_reference else f"teacher {teacher.label()}"


def grid_nfe(nfes: Sequence[int]) -> int:
    """The NFE the sample grid shows: 5 (the headline setting) when evaluated, else the smallest."""
    return 5 if 5 in nfes else min(nfes)


def sample_grid(rows: list[tuple[str, torch.Tensor]], path: str | Path) -> Path:
    """A PNG with one row of samples per entry (float NCHW in [-1, 1]), each row's name on its left; returns its
    path."""
    images = np.concatenate([to_uint8(x.float().cpu().numpy()) for _, x in rows])
    scale = max(1, -(-GRID_MIN_PIXELS // images.shape[1]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    grid = make_grid(images, ncol=rows[0][1].shape[0], pad=GRID_PAD)
    strip = label_strip([name for name, _ in rows], grid.shape[0], images.shape[1], grid.shape[2])
    return write_png(path, np.concatenate([strip, grid], axis=1))


def label_strip(labels: list[str], height: int, row_height: int, channels: int) -> np.ndarray:
    """A black [height, LABEL_WIDTH, channels] uint8 strip with `labels[i]` right-aligned beside grid row i."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(LABEL_WIDTH / dpi, height / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    for i, label in enumerate(labels):
        text = label if len(label) <= LABEL_CHARS else "..." + label[-(LABEL_CHARS - 3):]
        y = GRID_PAD + i * (row_height + GRID_PAD) + row_height / 2
        fig.text(0.96, 1 - y / height, text, color="white", ha="right", va="center", fontsize=8)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[:height, :LABEL_WIDTH, :3]
    color = rgb if channels >= 3 else rgb.max(axis=2, keepdims=True)  # PNG: gray(+alpha) or RGB(+alpha)
    strip = np.full((height, LABEL_WIDTH, channels), 255, np.uint8)  # an alpha channel stays opaque
    strip[..., :color.shape[2]] = color
    return strip


def write_plots(path: str | Path, report: dict, denoiser: Denoiser, solvers: list[ResolvedSolver],
                held: HeldOut) -> dict:
    """The chart at `path` and the grid beside it: the target's samples first, then each solver at `grid_nfe`."""
    chart = quality_plot(report, path)
    nfe = grid_nfe([s.table.nfe for s in solvers])
    k = min(GRID_SAMPLES, held.noise.shape[0])
    labels = None if held.labels is None else held.labels[:k]
    shown = (lambda x: x) if held.decoded_target is None else (lambda x: decode(denoiser, x))  # latents: images
    rows = [(target_label(report), shown(held.target[:k]))]
    rows += [(s.label, shown(run_solver(denoiser, s.table, held.noise[:k], labels, held.dtype)))
             for s in solvers if s.table.nfe == nfe]
    grid = sample_grid(rows, grid_path(path))
    return {"chart": str(chart), "grid": str(grid), "grid_nfe": nfe, "grid_rows": [r[0] for r in rows]}
