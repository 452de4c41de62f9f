"""Every ```python block of docs/flax.md runs as written, and prints what its comments say."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).parents[1] / "docs" / "flax.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs_and_prints_its_comments(index, capsys):
    block = BLOCKS[index]
    exec(compile(block, f"{DOC}:block{index}", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    # A print(...)  # value comment, or a "# value" line right after a print, must match.
    expected = []
    lines = block.splitlines()
    for j, line in enumerate(lines):
        if line.startswith("print("):
            m = re.search(r"#\s*(\S.*)$", line)
            if m:
                expected.append(m.group(1).split(":")[0].strip())
            elif j + 1 < len(lines) and lines[j + 1].startswith("# "):
                expected.append(lines[j + 1][2:].split("  ")[0].strip())
            else:
                expected.append(None)
    assert len(printed) == len(expected), (printed, expected)
    for got, want in zip(printed, expected):
        if want is not None:
            assert got.strip() == want, (got, want)
