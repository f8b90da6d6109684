"""Write runtime/cpp/src/contract.h from s4s_export/contract.py (run after changing the contract)."""

from pathlib import Path

from s4s_export.contract import CPP_HEADER, cpp_header

if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / CPP_HEADER
    path.write_text(cpp_header())
    print(f"wrote {path}")
