"""PNG charts beside RESULTS.md (matplotlib, no display): the latency distributions of the main
figures, from the samples each figure keeps (`Figure.samples`), and figure 19's pickup distances,
batch vs greedy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

CHARTS = Path(__file__).resolve().parent / "charts"
LATENCY_PNG = CHARTS / "latency.png"
PICKUP_PNG = CHARTS / "batch_vs_greedy.png"


def write_latency_chart(samples: Mapping[str, Sequence[float]], path: Path = LATENCY_PNG) -> bool:
    """One panel: each figure's latency as a percentile curve (x: ms, log scale; y: the share
    of requests at or under it), p50 and p99 marked. False when there is nothing to draw."""
    drawn = {name: sorted(values) for name, values in samples.items() if values}
    if not drawn:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for name, ordered in drawn.items():
        n = len(ordered)
        # At most ~2,000 points per curve: the file stays small, the shape is kept.
        step = max(1, n // 2000)
        xs = [max(v, 1e-3) for v in ordered[::step]] + [max(ordered[-1], 1e-3)]
        ys = [100.0 * (i + 1) / n for i in range(0, n, step)] + [100.0]
        (line,) = ax.plot(xs, ys, label=f"{name} (n {n:,})", linewidth=1.4)
        for pct in (50.0, 99.0):
            v = ordered[min(n - 1, max(0, round(pct / 100 * n) - 1))]
            ax.plot([max(v, 1e-3)], [pct], "o", color=line.get_color(), markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("% at or under")
    ax.set_ylim(0, 100.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("RideFlow latency distributions (dots: p50 and p99)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def write_pickup_chart(
    panels: Mapping[str, Mapping[str, Sequence[float]]], path: Path = PICKUP_PNG
) -> bool:
    """One panel per scenario (title -> {strategy: pickup distances in m}): each strategy's
    distances as a cumulative share, its mean in the legend. False when there is nothing."""
    if not any(values for series in panels.values() for values in series.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(9, 3.4), dpi=80, sharey=True, squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items(), strict=True):
        for name, values in series.items():
            ordered = sorted(values)
            if not ordered:
                continue
            n = len(ordered)
            mean = sum(ordered) / n
            ax.step(
                [v / 1000 for v in ordered],
                [(i + 1) / n for i in range(n)],
                where="post",
                label=f"{name} (mean {mean:,.0f} m, n {n:,})",
            )
        ax.set_title(title)
        ax.set_xlabel("pickup distance, km")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("share of accepted orders")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def chart_lines(directory: Path, relative_to: Path) -> list[str]:
    """RESULTS.md's charts section: a link to every PNG in `directory`."""
    pngs = sorted(directory.glob("*.png")) if directory.exists() else []
    if not pngs:
        return []
    lines = ["## Charts", ""]
    for png in pngs:
        rel = png.relative_to(relative_to)
        lines.append(f"![{png.stem}]({rel.as_posix()})")
        lines.append("")
    return lines
