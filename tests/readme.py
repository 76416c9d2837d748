"""The README's code examples, so the tests run exactly what users read."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME ... -->`` in README.md."""
    text = README.read_text(encoding="utf-8")
    marker = f"<!-- example: {name}"
    if marker not in text:
        raise LookupError(f"README.md has no example {name!r}")
    after = text.split(marker, 1)[1]
    block = after.split("```", 2)[1]
    return block.split("\n", 1)[1]  # drop the language tag line
