"""`--precision`: fp32|fp16|bf16 per graph component, parsed without torch (docs/export.md "Precision").

Grammar: one value (`fp16`) sets the denoiser network (the whole network of a pixel model; the UNet or
transformer of a latent one, whose decoder and text encoder stay fp32), or comma-separated
`COMPONENT=VALUE` pairs (`unet=fp16,vae=fp32,text-encoder=fp16`) with components `denoiser` (alias
`unet`, `transformer`), `decoder` (alias `vae`) and `text-encoder`. A component not named is fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import S4SError, choice_error

PRECISION_NAMES = ("fp32", "fp16", "bf16")
DENOISER, DECODER, TEXT_ENCODER = "denoiser", "decoder", "text-encoder"
COMPONENTS = (DENOISER, DECODER, TEXT_ENCODER)
ALIASES = {"unet": DENOISER, "transformer": DENOISER, "vae": DECODER}
# ORT-vs-PyTorch and deviation limits grow in this order (export/verify.py LIMITS)
LOWEST_FIRST = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class PrecisionSpec:
    """Each component's precision; `named` holds the components the user named (the per-component form)."""

    denoiser: str = "fp32"
    decoder: str = "fp32"
    text_encoder: str = "fp32"
    named: frozenset[str] = frozenset()

    def of(self, component: str) -> str:
        return {DENOISER: self.denoiser, DECODER: self.decoder, TEXT_ENCODER: self.text_encoder}[component]

    def lowest(self, components: tuple[str, ...] | list[str]) -> str:
        """The least precise of `components` (the one that sets a graph's verification limits)."""
        return min((self.of(c) for c in components), key=LOWEST_FIRST.index)

    def check_components(self, absent: dict[str, str]) -> None:
        """A named component the build lacks ({component: why}) -> one-line S4SError."""
        for c in COMPONENTS:
            if c in self.named and c in absent:
                raise S4SError(f"--precision names {c}, but {absent[c]}: drop {c}={self.of(c)}")

    def label(self) -> str:
        """The file-name part: the denoiser's precision, then `-<component>-<value>` for others not fp32."""
        rest = "".join(f"-{c}-{self.of(c)}" for c in (DECODER, TEXT_ENCODER) if self.of(c) != "fp32")
        return self.denoiser + rest

    def components(self, present: list[str]) -> dict[str, str]:
        """{component: precision} of the components a build has (the sidecar's component_precision)."""
        return {c: self.of(c) for c in COMPONENTS if c in present}


def parse_precision(text: str) -> PrecisionSpec:
    """`fp16` or `unet=fp16,vae=fp32,...` -> PrecisionSpec; bad grammar, component or value -> S4SError."""
    text = text.strip()
    if "=" not in text:
        if text not in PRECISION_NAMES:
            raise choice_error("precision", text, PRECISION_NAMES)
        return PrecisionSpec(denoiser=text)
    values: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name or not value:
            raise S4SError(f"--precision takes fp32|fp16|bf16 or COMPONENT=VALUE pairs separated by commas "
                           f"(e.g. unet=fp16,vae=fp32); got {part.strip()!r} in {text!r}")
        component = ALIASES.get(name.lower(), name.lower())
        if component not in COMPONENTS:
            raise S4SError(f"unknown --precision component {name!r}; choose from: {', '.join(COMPONENTS)} "
                           f"(aliases: {', '.join(f'{a}={c}' for a, c in ALIASES.items())})")
        if value not in PRECISION_NAMES:
            raise S4SError(f"unknown precision {value!r} for {component}; choose one of: "
                           f"{', '.join(PRECISION_NAMES)}")
        if component in values:
            raise S4SError(f"--precision names {component} twice (as {name!r} and another alias); name it once")
        values[component] = value
    return PrecisionSpec(denoiser=values.get(DENOISER, "fp32"), decoder=values.get(DECODER, "fp32"),
                         text_encoder=values.get(TEXT_ENCODER, "fp32"), named=frozenset(values))
