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


LATENT_HEADERS = ["batch", "baked ms", "host loop ms", "UNet call ms (2B)", "decode ms", "overhead", "host overhead",
                  "host / baked", "max abs diff"]


def latent_cells(row: dict) -> list[str]:
    """One latent comparison row as table cells (`LATENT_HEADERS`)."""
    return [str(row["batch"]), f"{row['baked_ms']:.1f}", f"{row['host_loop_ms']:.1f}", f"{row['unet_call_ms']:.1f}",
            f"{row['decode_ms']:.1f}", f"{row['overhead']:.3f}", f"{row['host_overhead']:.3f}",
            f"{row['host_over_baked']:.3f}", f"{row['max_abs_diff']:.1e}"]


def latent_title(report: dict) -> str:
    req = report["request"]
    return (f"{report['model']['name']}: baked graph against the host-loop pipeline, {report['solver']} "
            f"({report['scheduler']}), NFE {report['nfe']}, guidance {report['guidance_scale']}, ONNX Runtime "
            f"{report['provider']}, {req['threads']} thread(s), median of {req['repeats']} interleaved rounds after "
            f"{req['warmup']} warm-up calls")


LATENT_NOTE = ("overhead = baked ms / (NFE x UNet call ms + decode ms); host overhead: the same for the host loop; "
               "max abs diff: the two paths' images")


def latent_markdown(report: dict) -> str:
    """The latent comparison as Markdown, with the machine and the load before and after the run."""
    lines = [f"{latent_title(report)}. Machine: {describe_machine(report['machine'])}; load average "
             f"{report['load_average_1min_after']} after the run.", "",
             "| " + " | ".join(LATENT_HEADERS) + " |", "|" + "---|" * len(LATENT_HEADERS)]
    lines += ["| " + " | ".join(latent_cells(r)) + " |" for r in report["rows"]]
    lines += ["", f"- {LATENT_NOTE}."]
    lines += [f"- batch {r['batch']}, spread over the rounds (min..max ms): baked {r['baked_min_ms']:.1f}.."
              f"{r['baked_max_ms']:.1f}, host loop {r['host_loop_min_ms']:.1f}..{r['host_loop_max_ms']:.1f}."
              for r in report["rows"]]
    return "\n".join(lines) + "\n"
