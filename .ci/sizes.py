"""Print the largest modules and classes, and fail on one over the house's limits.

A module over 400 lines or a class over 300 (tests and migrations aside) fails `make lint`
unless its module docstring says why, in a line that starts with `Size exception:`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("bot", "handlers", "storage", "sandbox")
MODULE_LIMIT = 400
CLASS_LIMIT = 300
SHOWN = 8


def sizes(root: Path) -> tuple[list[tuple[int, str, bool]], list[tuple[int, str, bool]]]:
    """(lines, name, excused) of every module and every class under the packages."""
    modules: list[tuple[int, str, bool]] = []
    classes: list[tuple[int, str, bool]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            docstring = ast.get_docstring(tree) or ""
            excused = any(
                line.strip().startswith("Size exception:") for line in docstring.splitlines()
            )
            name = str(path.relative_to(root))
            modules.append((len(source.splitlines()), name, excused))
            classes.extend(
                (node.end_lineno - node.lineno + 1, f"{name}:{node.name}", excused)
                for node in ast.walk(tree)
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None
            )
    return modules, classes


def main() -> int:
    modules, classes = sizes(Path(__file__).resolve().parent.parent)
    failed = False
    for title, entries, limit in (
        ("modules", modules, MODULE_LIMIT),
        ("classes", classes, CLASS_LIMIT),
    ):
        entries.sort(reverse=True)
        print(f"largest {title} (limit {limit} lines):")
        for lines, name, excused in entries[:SHOWN]:
            print(f"  {lines:5} {name}{'  (excused in its docstring)' if excused else ''}")
        over = [(lines, name) for lines, name, excused in entries if lines > limit and not excused]
        for lines, name in over:
            print(f"  ✗ {name}: {lines} lines, over {limit}; split it or say why (Size exception:)")
        failed = failed or bool(over)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
