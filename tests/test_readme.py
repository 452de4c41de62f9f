"""Every ```python block of the README runs as written and prints what its comments say.

A ``print(...)  # value`` line (or a ``# value`` line right after a print) states
the expected output; text after a colon or two spaces in the comment is commentary.
"""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def expected_prints(block):
    lines = block.splitlines()
    out = []
    for j, line in enumerate(lines):
        if line.startswith("print("):
            m = re.search(r"#\s*(\S.*)$", line)
            if m:
                out.append(m.group(1).split(":")[0].split("  ")[0].strip())
            elif j + 1 < len(lines) and lines[j + 1].startswith("# "):
                out.append(lines[j + 1][2:].split("  ")[0].strip())
            else:
                out.append(None)
    return out


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_and_prints_its_comments(index, capsys):
    block = BLOCKS[index]
    exec(compile(block, f"{README}:block{index}", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    expected = expected_prints(block)
    assert len(printed) == len(expected), (printed, expected)
    for got, want in zip(printed, expected):
        if want is not None:
            assert got.strip() == want, (got, want)
