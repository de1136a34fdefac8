"""Write docs/bad_inputs.md: what femurseg answers for every bad input the tests hold.

    python scripts/bad_inputs_table.py

The cases live in tests/bad_inputs.py; tests/test_io_validation.py fails when the page and the
code disagree, so rerun this after changing a message.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bad_inputs import markdown_table  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = markdown_table(Path(tmp))
    out = ROOT / "docs" / "bad_inputs.md"
    out.write_text(text, encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
