"""The public face, walked: every public function and layer takes its options by keyword
and is annotated; `import jax_tconv` needs no Flax; `auto_method` tells what "auto" runs.

The walk starts from each public module's ``__all__``, so a new public function is held to
these rules without being listed here.
"""

import importlib.util
import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_tconv
from jax_tconv import _strategy, checkerboard, initializers, interop, nn
from jax_tconv.nn import linen, nnx

MODULES = [jax_tconv, checkerboard, initializers, interop, nn, linen, nnx]
if importlib.util.find_spec("equinox") is not None:  # an optional extra
    from jax_tconv.nn import equinox as eqx_layers

    MODULES.append(eqx_layers)


def _public_callables():
    seen = {}
    for module in MODULES:
        for name in getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")]):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__.startswith("jax_tconv"):
                seen[f"{module.__name__}.{name}"] = obj
            elif inspect.isclass(obj) and obj.__module__.startswith("jax_tconv"):
                for method in ("__init__", "__call__"):
                    fn = obj.__dict__.get(method)
                    if fn is not None:
                        seen[f"{module.__name__}.{name}.{method}"] = fn
    return seen


PUBLIC = _public_callables()


def test_the_walk_sees_the_api():
    for name in ("jax_tconv.conv_transpose", "jax_tconv.conv_transpose_phase",
                 "jax_tconv.auto_method", "jax_tconv.interop.from_flax",
                 "jax_tconv.nn.nnx.ConvTranspose.__init__", "jax_tconv.nn.linen.ConvTranspose.__call__",
                 "jax_tconv.initializers.icnr", "jax_tconv.nn.pixel_shuffle",
                 "jax_tconv.operator_norm", "jax_tconv.nn.adjoint",
                 "jax_tconv.interop.from_equinox", "jax_tconv.interop.from_torch_module",
                 "jax_tconv.interop.to_torch_module"):
        assert name in PUBLIC, name


# linen layers are dataclasses, like flax.linen.Conv: their fields may be given by position.
@pytest.mark.parametrize("name", sorted(n for n in PUBLIC if ".linen." not in n
                                        or not n.endswith("__init__")))
def test_optional_arguments_are_keyword_only(name):
    for p in inspect.signature(PUBLIC[name]).parameters.values():
        if p.default is not inspect.Parameter.empty or p.name == "rngs":
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_argument_and_result_is_annotated(name):
    sig = inspect.signature(PUBLIC[name])
    for p in sig.parameters.values():
        if p.name not in ("self", "cls"):
            assert p.annotation is not inspect.Parameter.empty, (name, p.name)
    if not name.endswith("__init__"):
        assert sig.return_annotation is not inspect.Signature.empty, name


def test_formulation_functions_are_plain_functions_with_the_same_options():
    params = [p for p in inspect.signature(jax_tconv.conv_transpose).parameters if p != "method"]
    for m in jax_tconv.METHODS:
        fn = getattr(jax_tconv, f"conv_transpose_{m}")
        assert fn.__name__ == f"conv_transpose_{m}" and not hasattr(fn, "__wrapped__")
        assert list(inspect.signature(fn).parameters) == params


def test_typed_package():
    import importlib.resources
    assert (importlib.resources.files("jax_tconv") / "py.typed").is_file()


def test_import_needs_no_flax_no_optax_and_no_torch():
    code = ("import sys, jax_tconv; import jax.numpy as jnp;"
            "jax_tconv.conv_transpose(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)));"
            "jax_tconv.checkerboard.overlap_map((3,), 2, input_shape=(4,), kind='resize');"
            "print(sorted(m for m in ('flax', 'optax', 'torch') if m in sys.modules));"
            "from jax_tconv.nn import linen; print('flax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"], out


def test_the_flax_layers_need_no_equinox():
    """Equinox is imported by jax_tconv.nn.equinox (and adjoint of an Equinox layer) only."""
    code = ("import sys, jax, jax.numpy as jnp; from flax import nnx;"
            "from jax_tconv.nn import adjoint, linen, nnx as tnnx;"
            "adjoint(nnx.Conv(1, 1, (3,), rngs=nnx.Rngs(0)));"
            "print('equinox' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out


# ----------------------------------------------------------------------------
# auto_method: the user's arguments in, what "auto" runs and why out.


CASES = [  # (x shape, w shape, kwargs)
    ((1, 8, 8, 8, 4), (4, 4, 4, 2, 4), dict(strides=2, padding=1)),           # 3-D
    ((2, 16, 16, 8), (4, 4, 3, 8), dict(strides=2, padding=1)),               # 2-D
    ((1, 4, 4, 512), (4, 4, 256, 512), dict(strides=2, padding=1)),           # DCGAN's first
    ((2, 3, 9, 9), (3, 2, 3, 3), dict(strides=2, dimension_numbers=("NCHW", "OIHW", "NCHW"))),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_auto_method_names_what_auto_runs(case, monkeypatch):
    x_shape, w_shape, kw = CASES[case]
    x = jnp.asarray(np.random.default_rng(case).normal(size=x_shape), jnp.float32)
    w = jnp.asarray(np.random.default_rng(case + 9).normal(size=w_shape), jnp.float32)
    ran = []
    spies = {name: (lambda f, name: lambda *a: (ran.append(name), f(*a))[1])(f, name)
             for name, f in _strategy.AUTO_FORWARDS.items()}
    monkeypatch.setattr(_strategy, "AUTO_FORWARDS", spies)
    y = jax_tconv.conv_transpose(x, w, **kw)
    choice = jax_tconv.auto_method(x, w, **kw)
    assert ran == [choice.method] and choice.method in jax_tconv.METHODS
    assert isinstance(choice.reason, str) and len(choice.reason) > 20
    # Shapes alone are enough, and the answer is the same.
    shaped = jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(w.shape, w.dtype)
    assert jax_tconv.auto_method(*shaped, **kw) == choice
    np.testing.assert_allclose(y, getattr(jax_tconv, f"conv_transpose_{choice.method}")(x, w, **kw),
                               rtol=1e-5, atol=1e-5)


def test_auto_method_on_other_backends_and_errors():
    x, w = jnp.ones((1, 8, 8, 8, 4)), jnp.ones((4, 4, 4, 2, 4))
    assert jax_tconv.auto_method(x, w, strides=2, backend="cpu").method == "phase"
    assert jax_tconv.auto_method(x, w, strides=2, backend="gpu").method == "vjp"
    with pytest.raises(ValueError, match=r"^auto_method: strides must be >= 1"):
        jax_tconv.auto_method(x, w, strides=0)
