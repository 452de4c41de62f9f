"""Meshes with explicit axes: the output's sharding, and running a formulation under it.

Under a mesh whose axes are `jax.sharding.AxisType.Explicit` (`jax.make_mesh`'s
default in jax 0.10, used with `jax.set_mesh`) every array's type says how it
is sharded, and each JAX operation computes its result's sharding by a rule,
or refuses. The formulations are several operations each (stand-in primals,
reshapes, gathers) whose rules do not all compose, so `partitioned` runs the
formulation with the explicit axes made automatic (`jax.sharding.auto_axes`):
XLA's partitioner places the intermediate values, as under an automatic mesh,
and the result gets the sharding `output_spec` derives from the inputs' types.

The rule (docs/sharding.md), per axis of y = Cᵀ x, reading x's and w's types:

- the batch axis and the spatial axes are sharded as x's: what
  `lax.conv_general_dilated` (and so `lax.conv_transpose` and `jax.vjp` of a
  convolution) gives for a replicated kernel. A sharded spatial axis needs an
  output size its devices divide, as in lax;
- the channel axis is sharded as the kernel's output-channel axis ('I', the
  ``C_out // groups`` one) when ``groups == 1``: `jnp.einsum`'s rule for a
  kernel axis that is not summed over (lax's convolution asks for
  ``out_sharding`` instead);
- the summed channel axis (x's channels, the kernel's 'O'): sharded on one
  side, it is gathered (einsum's rule); sharded on both it is ambiguous, and
  refused as `jax.lax.dot_general` refuses it.

Gradients have their primal's sharding (JAX's transpose rules). Meshes with
automatic axes only are left to the partitioner as before, and inside
`jax.shard_map` no axis is explicit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_tconv._spec import Spec

Formulation = Callable[[jax.Array, jax.Array, Spec], jax.Array]


def _mesh(*arrays):
    """The abstract mesh in effect: the context's (`jax.set_mesh`), else the arrays' own."""
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty:
        return mesh
    for a in arrays:
        m = getattr(jax.typeof(a).sharding, "mesh", None)
        if m is not None and not m.empty:
            return m
    return None


def explicit_axes(*arrays) -> tuple[str, ...]:
    """The mesh axes in effect whose type is Explicit (none outside such a mesh)."""
    mesh = _mesh(*arrays)
    if mesh is None:
        return ()
    return tuple(n for n, t in zip(mesh.axis_names, mesh.axis_types) if t == AxisType.Explicit)


def _entries(a, axes) -> list[tuple[str, ...]]:
    """Per dimension of `a`, the explicit mesh axes it is split over (in order; () if none)."""
    spec = tuple(jax.typeof(a).sharding.spec)
    spec += (None,) * (a.ndim - len(spec))
    out = []
    for entry in spec:
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        out.append(tuple(n for n in names if n in axes))
    return out


def _show(names: tuple[str, ...]) -> str:
    return repr(names[0]) if len(names) == 1 else repr(names)


def output_spec(fn: str, x: jax.Array, w: jax.Array, spec: Spec, axes: tuple[str, ...]) -> P:
    """The `PartitionSpec` of y over the explicit `axes` (this module's rule).

    Raises:
      ValueError: a layout JAX refuses as well (what it would say, and the fix).
    """
    mesh = _mesh(x, w)
    size = {n: mesh.shape[n] for n in axes}
    xs, ws = _entries(x, axes), _entries(w, axes)
    dn = spec.dn
    y: list[tuple[str, ...]] = [()] * len(spec.out_shape)
    y[dn.lhs_spec[0]] = xs[dn.out_spec[0]]
    for j, (ax_x, ax_y) in enumerate(zip(dn.out_spec[2:], dn.lhs_spec[2:])):
        names, o = xs[ax_x], spec.out_shape[ax_y]
        devices = math.prod(size[n] for n in names)
        if o % devices:
            raise ValueError(
                f"{fn}: x's spatial dimension {j} is sharded over the explicit mesh axes "
                f"{_show(names)} ({devices} devices) but the output's size {o} is not a "
                f"multiple of {devices}; an explicitly sharded array splits evenly, and "
                f"lax.conv_general_dilated refuses this too ('not divisible by mesh axes'). "
                f"Replicate that dimension first (jax.sharding.reshard(x, P(...)) with None "
                f"there), choose an output size that {devices} divides, or make those mesh "
                f"axes automatic (AxisType.Auto).")
        y[ax_y] = names
    if spec.groups == 1:
        y[dn.lhs_spec[1]] = ws[dn.rhs_spec[1]]
    x_c, w_c = xs[dn.out_spec[1]], ws[dn.rhs_spec[0]]
    if x_c and w_c:
        raise ValueError(
            f"{fn}: the summed channel axis is sharded on both sides (x's channels over "
            f"{_show(x_c)}, the kernel's input channels 'O' over {_show(w_c)}), so each device "
            f"holds a partial sum and it is ambiguous how the output should be sharded; "
            f"jax.lax.dot_general refuses this too ('Contracting dimensions are sharded'). "
            f"Replicate one of them first, e.g. jax.sharding.reshard(w, P()), or run the "
            f"per-device sums in jax.shard_map and reduce them with jax.lax.psum.")
    used = [n for names in y for n in names]
    twice = sorted({n for n in used if used.count(n) > 1})
    if twice:
        raise ValueError(
            f"{fn}: the output would be sharded over the mesh axis {twice[0]!r} in two "
            f"dimensions (x's batch or spatial dimensions and the kernel's output channels "
            f"'I' both use it: y would be {P(*_spec_entries(y))}); jax.lax.dot_general "
            f"refuses such a result too ('illegally sharded result'). Shard the kernel over "
            f"another mesh axis (a 2-D mesh), or replicate it: jax.sharding.reshard(w, P()).")
    return P(*_spec_entries(y))


def _spec_entries(y: list[tuple[str, ...]]) -> list:
    return [None if not names else names[0] if len(names) == 1 else names for names in y]


def partitioned(fn: str, formulation: Formulation, x: jax.Array, w: jax.Array,
                spec: Spec) -> jax.Array:
    """``formulation(x, w, spec)``, with y sharded by `output_spec` under explicit mesh axes.

    Outside meshes with explicit axes this is the plain call.
    """
    axes = explicit_axes(x, w)
    if not axes:
        return formulation(x, w, spec)
    mesh = _mesh(x, w)
    out = output_spec(fn, x, w, spec, axes)
    if not _xla_miscounts(x, spec, mesh, axes):
        return jax.sharding.auto_axes(lambda x, w: formulation(x, w, spec), axes=axes,
                                      out_sharding=NamedSharding(mesh, out))(x, w)
    # Gather x's and y's spatial dimensions around the formulation (see _xla_miscounts).
    x = jax.sharding.reshard(x, NamedSharding(mesh, _unsplit(_entries(x, axes),
                                                             spec.dn.out_spec[2:])))
    inner = NamedSharding(mesh, _unsplit([_names(e) for e in out], spec.dn.lhs_spec[2:]))
    y = jax.sharding.auto_axes(lambda x, w: formulation(x, w, spec), axes=axes,
                               out_sharding=inner)(x, w)
    return jax.sharding.reshard(y, NamedSharding(mesh, out))


def _xla_miscounts(x, spec: Spec, mesh, axes) -> bool:
    """Would XLA's partitioner get these gradients wrong? Two layouts, both with x split in space:

    - x the same on every device of another mesh axis: the kernel gradients of
      the convolutions come out multiplied by that axis' size (Shardy and
      GSPMD, jax 0.10.2 and 0.12);
    - no more of x's rows (along a split spatial dimension) on each device
      than the kernel reaches across, ``d*(k - 1)``: Shardy's halo exchange
      returns wrong input gradients (the mismatch of
      examples/sharded_training.py at ``--size 12``; GSPMD is right).

    docs/sharding.md has a JAX-only reproduction of each. `partitioned` then
    gathers the spatial dimensions: right results, at the cost of the split.
    """
    xs = _entries(x, axes)
    split = [(j, a) for j, a in enumerate(spec.dn.out_spec[2:]) if xs[a]]
    if not split:
        return False
    used = {n for names in xs for n in names}
    if any(mesh.shape[n] > 1 and n not in used for n in mesh.axis_names):
        return True
    for j, a in split:
        rows = x.shape[a] // math.prod(mesh.shape[n] for n in xs[a])
        if rows <= spec.dilation[j] * (spec.kernel_size[j] - 1):
            return True
    return False


def _names(entry) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _unsplit(entries: list[tuple[str, ...]], dims) -> P:
    """`entries` as a PartitionSpec, with the dimensions `dims` not split."""
    return P(*_spec_entries([() if a in dims else names for a, names in enumerate(entries)]))


# Under jax.shard_map every value has a type that says over which mesh axes it varies,
# and a cotangent must match its primal's. The stand-in primals of the VJPs and
# transposes of the formulations are made to vary as the values they stand for;
# outside shard_map both helpers are no-ops.
def varying(*arrays) -> frozenset:
    """The mesh axes over which any of `arrays` varies (empty outside shard_map)."""
    return frozenset().union(*(jax.typeof(a).manual_axis_type.varying for a in arrays))


def vary(a, axes):
    """`a`, marked as varying over `axes` as well."""
    return lax.pcast(a, tuple(sorted(axes - varying(a))), to="varying")
