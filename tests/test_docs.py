"""The README and every page of docs/: each code block runs, each link resolves.

Code blocks. Every fenced block whose info string is ``python`` runs as written,
on its own, in a fresh namespace (as a reader pastes it), in this process. The
fence decides:

- ```` ```python ````: run, and its printed output checked;
- ```` ```python no-run ````: compiled (so it is valid Python) but not run, for
  code that needs what a test machine lacks (8 GPUs, a cluster, a download);
- anything else (```` ```bash ````, ```` ```text ````, ```` ```pycon ````, no info
  string): not Python, left alone. A fence whose info string merely starts with
  ``py`` (```` ```py ````, ```` ```python3 ````) is an error, so that no block is
  skipped by a typo.

Expected output. A block states what it prints in comments, and prints nothing
it does not state:

- a ``print(...)`` statement's output is the comment at the end of its last line,
  ``print(y.shape)  # (8, 32, 32, 32)``;
- a ``print(...)`` without such a comment states its output in the run of
  whole-line comments directly below it, one per printed line: for long output,
  or for a print inside a loop (the loop's last line)::

      for method in ("dilated", "matmul"):
          print(method, count(method))
      # dilated 3
      # matmul 13

- a comment holds the printed line exactly, optionally followed by commentary
  after a colon or two spaces: ``# (1, 10, 10, 4): PyTorch's (1, 4, 10, 10)``
  and ``# [1 2 1 2 1 2 1 1]   k=3, s=2: uneven``. Surrounding whitespace is
  ignored.

Links. Every relative link and image in these files (``[text](path)``,
``![alt](path)``, outside code) names an existing file, relative to the file
that holds the link; a ``#anchor`` must be a heading of the target (GitHub's
anchors: lower case, punctuation dropped, spaces to hyphens). Web links are
not fetched.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Pages another issue is writing: a link to one may dangle until it lands, and no longer.
NOT_YET_WRITTEN: set[str] = set()

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*(.*?)\s*$")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(text: str):
    """``(info string, first line number of the code, code)`` for every fenced block."""
    blocks, lines, j = [], text.splitlines(), 0
    while j < len(lines):
        m = FENCE.match(lines[j])
        if not m:
            j += 1
            continue
        indent, fence, info = m.groups()
        end = j + 1
        while end < len(lines) and not (lines[end].strip().startswith(fence[0] * len(fence))
                                        and lines[end].strip().strip(fence[0]) == ""):
            end += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in lines[j + 1:end])
        blocks.append((info, j + 2, textwrap.dedent(body) + "\n"))
        j = end + 1
    return blocks


def python_blocks(kind: str):
    """pytest params ``(path, line, code)`` of every block whose info string is `kind`."""
    return [pytest.param(path, line, code, id=f"{rel(path)}:{line}")
            for path in DOCS for info, line, code in fenced_blocks(path.read_text())
            if info == kind]


RUN = python_blocks("python")
NO_RUN = python_blocks("python no-run")


def expected_output(code: str) -> list[str]:
    """The printed lines a block states in its comments (see the module docstring)."""
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string[1:].strip(), tok.line.strip().startswith("#"))
    prints = sorted(node.end_lineno for node in ast.walk(ast.parse(code))
                    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print")
    expected = []
    for end in prints:
        if end in comments and not comments[end][1]:      # a comment after the code
            expected.append(comments[end][0])
            continue
        below = end + 1
        while below in comments and comments[below][1]:   # whole-line comments right below
            expected.append(comments[below][0])
            below += 1
        assert below > end + 1, f"line {end}: print(...) without a comment stating its output"
    return expected


def matches(printed: str, stated: str) -> bool:
    """`stated` is `printed`, optionally followed by commentary after ':' or two spaces."""
    printed = printed.strip()
    if not stated.startswith(printed):
        return False
    rest = stated[len(printed):]
    return rest == "" or rest.startswith(":") or rest.startswith("  ")


def test_every_page_is_found_and_has_code():
    names = {rel(p) for p in DOCS}
    assert {"README.md", "docs/contract.md", "docs/layers.md", "docs/reliability.md"} <= names
    assert len(RUN) >= 10, [p.id for p in RUN]


def test_no_block_is_skipped_by_a_typo():
    for path in DOCS:
        for info, line, _ in fenced_blocks(path.read_text()):
            if info.startswith("py"):
                assert info in ("python", "python no-run", "pycon"), (
                    f"{rel(path)}:{line}: fence '```{info}': write '```python' (runs) or "
                    "'```python no-run' (compiled only); see tests/test_docs.py")


@pytest.mark.parametrize("path, line, code", RUN)
def test_block_runs_and_prints_what_it_says(path, line, code, capsys):
    expected = expected_output(code)
    # Leading newlines make tracebacks point at the line of the page itself.
    exec(compile("\n" * (line - 1) + code, str(path), "exec"), {"__name__": "__doc_block__"})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(expected), (
        f"{rel(path)}:{line}: printed {len(printed)} lines, its comments state {len(expected)}:"
        f"\nprinted {printed}\nstated  {expected}")
    for got, want in zip(printed, expected):
        assert matches(got, want), f"{rel(path)}:{line}: printed {got!r}, the comment says {want!r}"


@pytest.mark.parametrize("path, line, code", NO_RUN or [pytest.param(None, 0, "", id="none")])
def test_no_run_block_compiles(path, line, code):
    if path is not None:
        compile("\n" * (line - 1) + code, str(path), "exec")


def test_the_output_convention():
    code = textwrap.dedent('''\
        print(1)  # 1
        print("a: b")  # a: b: commentary
        print(
            2)  # 2
        for k in "xy":
            print(k)
        # x
        # y   commentary

        # not output: a blank line above
        x = 3  # not output: no print
        print("   [1  2]")
        # [1  2]
        ''')
    assert expected_output(code) == ["1", "a: b: commentary", "2", "x", "y   commentary",
                                     "[1  2]"]
    assert matches("a: b", "a: b: commentary") and matches("y", "y   commentary")
    assert not matches("(8, 32", "(8, 32, 32)") and not matches("1", "12")
    with pytest.raises(AssertionError, match="without a comment"):
        expected_output("print(1)\n")


# --- links -----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str, *, inline_code: bool = False) -> str:
    """`text` with its fenced blocks blanked (and inline code, unless `inline_code`):
    what is left is where a link is a link and a heading a heading."""
    lines, out, fence = text.splitlines(), [], None
    for line in lines:
        m = FENCE.match(line)
        if m and fence is None:
            fence = m.group(2)[0] * len(m.group(2))
            out.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            out.append("")
            continue
        out.append(line if inline_code else re.sub(r"`[^`]*`", "``", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of `path`; a repeated heading gets -1, -2, ..."""
    seen, out = {}, set()
    for line in prose(path.read_text(), inline_code=True).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def links(path: Path):
    for number, line in enumerate(prose(path.read_text()).splitlines(), 1):
        for m in LINK.finditer(line):
            yield number, m.group(1)


def test_every_relative_link_and_image_resolves():
    problems, checked = [], 0
    for path in DOCS:
        for number, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto:
                continue
            checked += 1
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{rel(path)}:{number}: {target}"
            if not dest.exists():
                if dest.is_relative_to(ROOT) and rel(dest) in NOT_YET_WRITTEN:
                    continue
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading with that anchor in {rel(dest)}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


def test_pages_not_yet_written_are_still_missing():
    """Once a page of NOT_YET_WRITTEN exists, its links are checked like any other."""
    for name in NOT_YET_WRITTEN:
        assert not (ROOT / name).exists(), f"{name} exists now: remove it from NOT_YET_WRITTEN"


def test_the_link_checker():
    text = ("# A `code` title: yes\n## Same\n## Same\n[a](x.md#a-code-title-yes) ![i](g/p.png)\n"
            "`[not](a-link)` and [web](https://example.com)\n```\n[no](t.md)\n```\n")
    assert [m.group(1) for line in prose(text).splitlines() for m in LINK.finditer(line)] == [
        "x.md#a-code-title-yes", "g/p.png", "https://example.com"]
    assert slug("The textbook example: `Cᵀ`, in numbers") == "the-textbook-example-cᵀ-in-numbers"
    assert slug("Export: build here, serve or train elsewhere") == (
        "export-build-here-serve-or-train-elsewhere")


# --- no private names ------------------------------------------------------------------------

PRIVATE = re.compile(r"jax_tconv\._\w+|\b_(?:spec|api|conv|vjp|matmul|dilated|phase|layout|bench|"
                     r"selfcheck)\b(?:\.py)?|\b(?:adjoint_derivatives|fast_kernel_gradient|"
                     r"transpose_spec)\b")


def test_no_private_name_in_the_docs():
    """User-facing pages name only public API: a private module may be renamed any day."""
    found = [f"{rel(path)}:{n}: {m.group(0)}" for path in DOCS
             for n, line in enumerate(path.read_text().splitlines(), 1)
             for m in PRIVATE.finditer(line)]
    assert not found, "\n".join(found)
