"""Run observability: metrics JSONL, optional TensorBoard / W&B, a tqdm progress bar and the loss-curve PNG.

Only the main process writes. TensorBoard and Weights & Biases are imported lazily and only when asked for, so
neither is a dependency; matplotlib (``unif2ace[train]``) is needed only for the PNG plot and is used headless
(Agg backend).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from unif2ace.utils.io import atomic_write_text

__all__ = ["MetricsLogger", "ProgressBar", "plot_loss_curve", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file (a torn last line from a killed run is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    """Append-only metrics sink: one JSON object per line (``{"step": 10, "loss/total": 5.1, ...}``).

    On resume the file is cut back to the records at or before the resumed step, so a run killed after its last
    checkpoint does not leave duplicated steps.

    Args:
        path: the JSONL file.
        resume_step: the step training resumes from (records after it are dropped); 0 for a fresh run.
        enabled: False on non-main processes (every call is then a no-op).
        tensorboard_dir: write TensorBoard scalars here (None = off).
        wandb_project: log to this W&B project ("" = off).
        run_config: plain-data config sent to W&B.
    """

    def __init__(
        self,
        path: str | Path,
        resume_step: int = 0,
        enabled: bool = True,
        tensorboard_dir: str | Path | None = None,
        wandb_project: str = "",
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        if tensorboard_dir is not None:
            self._tb = _open_tensorboard(Path(tensorboard_dir))
        if wandb_project:
            self._wandb = _open_wandb(wandb_project, self.path.parent, run_config or {})

    def log(self, step: int, values: dict[str, float]) -> None:
        """Write one record for optimizer step ``step``."""
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3), **{k: _jsonable(v) for k, v in values.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def close(self) -> None:
        """Flush and close the optional sinks."""
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _open_tensorboard(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir=str(log_dir))


def _open_wandb(project: str, run_dir: Path, config: dict[str, Any]) -> Any:
    try:
        import wandb
    except ImportError:
        raise ValueError("train.wandb_project is set but wandb is not installed: pip install wandb") from None
    wandb.init(project=project, dir=str(run_dir), config=config, resume="allow")
    return wandb


class ProgressBar:
    """tqdm bar over optimizer steps showing loss, tokens/s and the ETA (main process only).

    Args:
        total: steps of the whole recipe.
        initial: steps already done (resume).
        enabled: False to disable (non-main processes, ``train.progress_bar=false``).
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train")

    def update(self, loss: float, tokens_per_s: float, stage: str) -> None:
        """Advance one step and refresh the postfix."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{stage} loss={loss:.4f} tok/s={tokens_per_s:,.0f}", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path, keys: tuple[str, ...] | None = None) -> Path | None:
    """Draw the loss terms of a metrics JSONL file against the step (log-scale y) as a PNG.

    Args:
        metrics_path: the JSONL file written by :class:`MetricsLogger`.
        out_png: destination PNG.
        keys: metric names to plot (default: every ``loss/*`` key present).

    Returns:
        The PNG path, or None when there is nothing to plot yet.

    Raises:
        ValueError: matplotlib is not installed (message names the extra to install).
    """
    records = read_metrics(metrics_path)
    if keys is None:
        keys = tuple(sorted({k for r in records for k in r if k.startswith("loss/")}))
    series = {k: [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("the loss-curve PNG needs matplotlib: pip install 'unif2ace[train]'") from None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, points in series.items():
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, label=key.removeprefix("loss/"), linewidth=1.2)
    if all(v > 0 for points in series.values() for _, v in points):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
