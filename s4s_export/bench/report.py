"""`s4s-export bench --markdown`: the benchmark report as Markdown, for docs/benchmarks.md."""

from __future__ import annotations

from ..timing import describe_machine
from .learning_cost import describe_learning


def markdown(report: dict) -> str:
    """The latency table as Markdown, with the machine, the settings and the learning cost."""
    req = report["request"]
    lines = [f"Model `{report['model']['name']}` (weights {report['model']['weights_sha256'][:12]}), solver "
             f"`{report['solver']}`, NFE {report['nfe']}; {req['threads']} thread(s), median of {req['repeats']} "
             f"interleaved rounds after {req['warmup']} warm-up calls. Machine: {describe_machine(report['machine'])}.",
             "",
             "| backend | batch | ms | call ms | overhead | images/s | vs eager |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['sampler_ms']:.2f} | {r['call_ms']:.2f} | "
                     f"{r['overhead']:.3f} | {r['images_per_s']:.1f} | {vs_eager(r)} |")
    lines.append("")
    for name, why in report["skipped"].items():
        lines.append(f"- {name}: skipped: {why}")
    lines.append(f"- {describe_learning(report['learning'])}")
    return "\n".join(lines) + "\n"


def vs_eager(row: dict) -> str:
    """`1.25x` (this backend's time over eager PyTorch's), or `-` without a PyTorch row."""
    return f"{row['vs_eager']:.2f}x" if "vs_eager" in row else "-"
