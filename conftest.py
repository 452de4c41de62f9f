"""Doctests (``--doctest-modules`` over jax_tconv/) whose example imports torch are skipped
where torch is not installed.

CI's newest leg (Python 3.13) has no torch; the examples of
`jax_tconv.interop.from_torch_module` and `to_torch_module` need it, and run on the leg
that has it. Every other doctest runs everywhere. tests/conftest.py holds the test suite's
own settings.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

# An example line that imports torch: "import torch", "import numpy as np, torch", "from torch".
_IMPORTS_TORCH = re.compile(r"^[ \t]*(import[ \t][\w., \t]*\btorch\b|from[ \t]+torch\b)", re.M)


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="the example imports torch, which is not installed")
    for item in items:
        test = getattr(item, "dtest", None)  # a doctest item's doctest.DocTest
        if test is not None and any(_IMPORTS_TORCH.search(ex.source) for ex in test.examples):
            item.add_marker(skip)
