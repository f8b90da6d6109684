"""The C++ runtime reads the graph contract from the generated runtime/cpp/src/contract.h, never from its own literals.

- the checked-in header is byte-identical to what s4s_export/contract.py generates now (so the names cannot
  drift: change the contract, run scripts/write_contract_header.py);
- no C++ runtime source spells a contract name (tensor names, description keys) as a string literal of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

from s4s_export import contract

ROOT = Path(__file__).resolve().parents[2]
CPP = ROOT / "runtime" / "cpp"
NAMES = {contract.NOISE, contract.LABELS, contract.GUIDANCE, contract.IMAGES, contract.NUM_CLASSES_KEY,
         contract.MODEL_KEY, contract.GUIDANCE_KEY, contract.PROMPT_EMBEDS, contract.NEGATIVE_PROMPT_EMBEDS,
         contract.INPUT_IDS, contract.TEXT_ENCODER_KEY, contract.TEXT_ENCODER_FILE_KEY, contract.TEXT_LENGTH_KEY,
         contract.TEXT_DIM_KEY}
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def test_checked_in_header_is_current():
    assert (ROOT / contract.CPP_HEADER).read_text() == contract.cpp_header(), \
        "runtime/cpp/src/contract.h is stale: run `python scripts/write_contract_header.py`"


def test_header_holds_every_contract_name():
    header = contract.cpp_header()
    for name in (*contract.INPUTS, contract.IMAGES, contract.NUM_CLASSES_KEY, contract.MODEL_KEY):
        assert f'[] = "{name}";' in header


def test_cpp_sources_use_the_header_not_literals():
    sources = [p for p in sorted(CPP.rglob("*")) if p.suffix in (".h", ".cpp") and "tests" not in p.parts
               and p != ROOT / contract.CPP_HEADER]
    assert any(p.name == "sampler.cpp" for p in sources)
    found = [f"{p.relative_to(ROOT)}:{i}: \"{m}\"" for p in sources
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if not line.lstrip().startswith("//") for m in LITERAL.findall(line) if m in NAMES]
    assert not found, "contract names spelled out in C++ (use s4s::contract:: from contract.h):\n" + "\n".join(found)
    users = [p.name for p in sources if "contract::k" in p.read_text()]
    assert {"sampler.cpp", "description.cpp", "onnxruntime_backend.cpp", "text_encoder.cpp"} <= set(users)
