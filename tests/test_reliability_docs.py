"""Every ```python block of docs/reliability.md runs as written and prints what it says.

Expected output: the comment of each ``print(...)  # value`` line, and a run of
``# value`` lines right after an indented block (a loop's prints).
"""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).parents[1] / "docs" / "reliability.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def expected_output(block):
    expected, after_indented = [], False
    for line in block.splitlines():
        if line.startswith("# ") and after_indented:
            expected.append(line[2:].strip())
            continue
        after_indented = line.startswith(" ") and line.strip() != ""
        match = re.match(r"\s*print\(.*\)\s+#\s*(.*)$", line)
        if match:
            expected.append(match.group(1).strip())
    return expected


def test_the_doc_has_its_sections():
    assert len(BLOCKS) >= 3  # the sharding examples live in the README (tests/test_readme.py)
    for title in ("Property-based tests", "PyTorch golden files", "Numerics", "NaN and Inf",
                  "Sharding", "Export"):
        assert f"## {title}" in DOC.read_text() or f"### {title}" in DOC.read_text(), title


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_and_prints_its_comments(index, capsys):
    block = BLOCKS[index]
    exec(compile(block, f"{DOC}:block{index}", "exec"), {"__name__": "__doc_block__"})
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert printed == expected_output(block)
