"""``method="tune"``: time every strategy once per configuration, remember the fastest.

Like ``torch.backends.cudnn.benchmark``. The first time a configuration is
seen (its key: backend, device kind, jax and jax_tconv versions, dtype and the
whole normalised `Spec`), `measure` builds random arrays of the configuration's
shapes and times each strategy in `candidates` on them, forward and
forward+backward (``value_and_grad`` of ``sum(y * c)`` with respect to x and w,
what training runs; for integer operands, which have no gradient, the forward
alone, and the candidates must agree exactly). The strategy with the fastest
forward+backward is stored in a JSON cache and run from then on; nothing is
measured on a hit.

Shapes are static at trace time, so the measurement happens in Python while
the user's function is traced, with fresh concrete arrays, on a worker thread
that sees none of the caller's traces (jit, vmap, grad, shard_map). Under
`jax.vmap` and `jax.shard_map` the configuration is what each call sees: one
example, or one device's block.

The cache (`cache_path`): ``$JAX_TCONV_TUNE_CACHE`` if set, else
``$XDG_CACHE_HOME/jax_tconv/tune.json``, else ``~/.cache/jax_tconv/tune.json``,
read when a call needs it. It is kept in memory per path, so a hit reads no
file. Writes hold a lock per process, and between processes a lock file
(``fcntl.flock`` where available); each write re-reads the file, merges its
entries and replaces the file atomically (a temporary file in the same
folder, then `os.replace`). A corrupt or foreign file is reported with a
`UserWarning` naming it, its configurations are measured again, and it is
rewritten.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import pathlib
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_tconv import _strategy
from jax_tconv._cache import CACHE_ENV, cache_path, file_lock, outside_traces, write_json
from jax_tconv._layout import channels_last
from jax_tconv._spec import Spec, shaped, transpose_spec
from jax_tconv._unbatched import batched
from jax_tconv._version import __version__
from jax_tconv.typing import (
    ArrayLike,
    DimensionNumbers,
    DTypeLike,
    IntOrSequence,
    Padding,
    Precision,
)

__all__ = ["CACHE_ENV", "TuneChoice", "Timing", "cache_path", "tune_choice"]

#: What the cache file says it is; a file without these is foreign.
FORMAT = "jax_tconv tune cache"
SCHEMA = 1
#: Timed calls of each candidate, forward and forward+backward (the median is kept).
ROUNDS = 5
#: Largest dense convolution matrix the "matmul" candidate may build while tuning
#: (16 MiB, far below `MATMUL_MAX_BYTES`): above it "matmul" is skipped unmeasured,
#: since a dense matrix that size is never the fastest way.
MATMUL_TUNE_BYTES = 1 << 24
#: "auto"'s program is kept unless another candidate's forward+backward is faster by more
#: than this factor: a short measurement on a busy machine is noisy, and "auto" is the
#: choice measured over the benchmark suite.
AUTO_MARGIN = 1.05
#: How far a candidate's forward value and gradients may stray from the element-wise
#: median of all candidates' (relative to the median's largest magnitude, per dtype)
#: before it is dropped as wrong: every candidate computes the same operator, so a
#: disagreement is a bug (in XLA or here), never a speed trade-off.
AGREEMENT_RTOL = {"float64": 1e-9, "float32": 1e-4}
AGREEMENT_RTOL_LOW_PRECISION = 3e-2  # float16, bfloat16 and the like

#: Every strategy "tune" may pick. The four formulations as given; "auto" (its
#: forward, phase-style derivatives, and its own channels-last rule); and
#: "vjp", "dilated" and "phase" run through the channels-last form of the
#: layout (x, w and y transposed around them), tried only when the user's
#: layout is not channels-last already.
BASE_CANDIDATES = ("vjp", "matmul", "dilated", "phase", "products", "auto")
CHANNELS_LAST_CANDIDATES = ("vjp+cl", "dilated+cl", "phase+cl")
ALL_CANDIDATES = BASE_CANDIDATES + CHANNELS_LAST_CANDIDATES

Entry = dict[str, Any]

# One lock for the in-memory cache, measurements and writes: measurements are
# serialised so that two of them never slow each other down.
_LOCK = threading.RLock()
# cache file path -> {key: entry}, as last read or written by this process.
_MEMORY: dict[str, dict[str, Entry]] = {}


class Timing(NamedTuple):
    """One candidate's median milliseconds, or why it has none.

    ``note`` is empty for a measured candidate; otherwise ``"failed: ..."``
    (it raised or gave non-finite values), ``"skipped: ..."`` or
    ``"same as NAME"`` (the same program as another candidate).
    """

    fwd_bwd_ms: float | None
    fwd_ms: float | None
    note: str = ""


class TuneChoice(NamedTuple):
    """What ``method="tune"`` runs for one configuration, and the timings behind it.

    ``method`` is one of `ALL_CANDIDATES`; ``timings`` maps every candidate
    tried to its `Timing`; ``key`` is the cache key; ``measured`` is True when
    this call measured (a cache miss) and False on a hit; ``seconds`` is the
    one-time cost of the measurement (compiling and timing every candidate);
    ``cache`` the cache file.
    """

    method: str
    timings: Mapping[str, Timing]
    key: str
    measured: bool
    seconds: float
    cache: str


# ----------------------------------------------------------------------------
# The strategies.


def candidates(spec: Spec) -> tuple[str, ...]:
    """The strategies tried for `spec`: channels-last variants only for other layouts."""
    if channels_last(spec).is_identity:
        return BASE_CANDIDATES
    return BASE_CANDIDATES + CHANNELS_LAST_CANDIDATES


def _matmul_bytes(spec: Spec, dtype: np.dtype) -> int:
    """Bytes of the per-example dense matrix C that "matmul" builds."""
    rows = math.prod(spec.in_shape) // spec.in_shape[spec.dn.out_spec[0]]
    cols = math.prod(spec.out_shape) // spec.out_shape[spec.dn.lhs_spec[0]]
    return rows * cols * dtype.itemsize


# ----------------------------------------------------------------------------
# Measuring.


def measure(spec: Spec, dtype: np.dtype, *, rounds: int | None = None,
            fn: str = "tune_choice") -> Entry:
    """Time every candidate on random arrays of `spec`'s shapes; a cache entry.

    Runs on a worker thread, outside any trace of the caller. Every candidate
    is compiled and run once (a candidate that raises, or whose result is not
    finite, is recorded as failed; one whose values stray from the median of
    all candidates' is dropped with a `RuntimeWarning` that names `fn`, the
    function the user called: `disagreements`), then the working ones are timed
    round-robin, `rounds` (default `ROUNDS`) calls each, forward+backward and
    forward, so that a noisy neighbour slows all of them alike. The choice is
    the working candidate with the smallest median forward+backward time,
    except that "auto"'s program is kept unless that one beats it by more than
    `AUTO_MARGIN`.

    Raises:
      RuntimeError: no candidate runs this configuration.
    """
    n = ROUNDS if rounds is None else rounds
    return outside_traces(lambda: _measure(spec, np.dtype(dtype), n, fn))


def _time(call: Callable[[], Any]) -> float:
    """Seconds of one call, waiting for its results."""
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - t0


def _measure(spec: Spec, dtype: np.dtype, rounds: int, fn: str) -> Entry:
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    out_dtype = np.dtype(spec.preferred_element_type or dtype)
    integer = np.issubdtype(dtype, np.integer)
    if integer:  # small values, so that every candidate's sums are exact and must be equal
        low = 0 if np.issubdtype(dtype, np.unsignedinteger) else -8
        x = jnp.asarray(rng.integers(low, 8, spec.in_shape), dtype)
        w = jnp.asarray(rng.integers(low, 8, spec.kernel_shape), dtype)
    else:
        x = jnp.asarray(rng.standard_normal(spec.in_shape), dtype)
        w = jnp.asarray(rng.standard_normal(spec.kernel_shape) / math.sqrt(math.prod(
            spec.kernel_shape)), dtype)
    c = jnp.asarray(rng.standard_normal(spec.out_shape), out_dtype)

    timings: dict[str, Timing] = {}
    calls: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    results: dict[str, list[np.ndarray]] = {}
    for name in candidates(spec):
        same = _strategy.same_program(name, spec)
        if same is not None:
            timings[name] = Timing(None, None, f"same as {same}")
            continue
        if name == "matmul" and _matmul_bytes(spec, dtype) > MATMUL_TUNE_BYTES:
            timings[name] = Timing(None, None, f"skipped: its dense matrix would be "
                                               f"{_matmul_bytes(spec, dtype):,} bytes, over "
                                               f"MATMUL_TUNE_BYTES = {MATMUL_TUNE_BYTES:,}")
            continue
        fwd = jax.jit(functools.partial(_strategy.run, name, spec=spec))
        pair: tuple[Callable[[], Any], Callable[[], Any]]
        if integer:  # integers have no gradient: "forward+backward" is the forward alone
            pair = (functools.partial(fwd, x, w),) * 2
        else:
            fwd_bwd = jax.jit(jax.value_and_grad(_loss(name, spec), argnums=(0, 1)))
            pair = (functools.partial(fwd, x, w), functools.partial(fwd_bwd, x, w, c))
        try:
            values = [np.asarray(leaf) for call in pair for leaf in jax.tree.leaves(call())]
            finite = all(bool(np.all(np.isfinite(v))) for v in values)
        except Exception as e:  # compiling or running failed: never pick it
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            timings[name] = Timing(None, None, f"failed: {type(e).__name__}: {first_line}")
            continue
        if not finite:
            timings[name] = Timing(None, None, "failed: non-finite values on finite inputs")
            continue
        calls[name], results[name] = pair, values
    for name, error in disagreements(results).items():
        warnings.warn(f"{fn}: method='tune' dropped the candidate {name!r}: its "
                      f"result disagrees with the other candidates' ({error}) on the measurement "
                      f"inputs of this configuration ({spec}). It is never picked; please "
                      f"report it with this message.", RuntimeWarning, stacklevel=2)
        timings[name] = Timing(None, None, f"dropped: disagrees with the others ({error})")
        del calls[name]
    if not calls:
        raise RuntimeError(
            f"{fn}: method='tune' found no strategy that runs this configuration "
            f"({spec}): " + "; ".join(f"{n}: {t.note}" for n, t in timings.items()))

    seconds: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in calls}
    for mode in (1, 0):  # forward+backward first: it decides
        for _ in range(rounds):
            for name, (fwd_call, fwd_bwd_call) in calls.items():
                seconds[name][mode].append(_time(fwd_bwd_call if mode else fwd_call))
    fwd_bwd_ms = {n: 1e3 * statistics.median(s[1]) for n, s in seconds.items()}
    for name, (fwd_s, _) in seconds.items():
        timings[name] = Timing(fwd_bwd_ms[name], 1e3 * statistics.median(fwd_s))
    choice = pick(fwd_bwd_ms, candidates(spec), _strategy.same_program("auto", spec) or "auto")
    return {
        "choice": choice,
        "candidates": {n: t._asdict() for n, t in timings.items()},
        "rounds": rounds,
        "seconds": time.perf_counter() - t_start,
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def disagreements(results: Mapping[str, Sequence[np.ndarray]]) -> dict[str, str]:
    """The candidates whose values stray from the element-wise median of all, and by how much.

    `results` maps each candidate to its arrays (forward value, loss, both
    gradients), computed on the same inputs. With fewer than three candidates
    there is no majority: each is compared with the other instead, and both
    are reported when they disagree.
    """
    names = list(results)
    if len(names) < 2:
        return {}
    bad = {}
    for i, arrays in enumerate(zip(*(results[n] for n in names))):
        stack = np.stack([np.asarray(a, np.float64) if not np.iscomplexobj(a) else a
                          for a in arrays])
        center = np.median(stack.real, axis=0) + 1j * np.median(stack.imag, axis=0) \
            if np.iscomplexobj(stack) else np.median(stack, axis=0)
        dtype = np.dtype(arrays[0].dtype)
        rtol = 0.0 if np.issubdtype(dtype, np.integer) else AGREEMENT_RTOL.get(
            dtype.name.replace("complex128", "float64").replace("complex64", "float32"),
            AGREEMENT_RTOL_LOW_PRECISION)   # integer sums are exact: equal, or wrong
        scale = float(np.max(np.abs(center), initial=0.0)) or 1.0
        for name, value in zip(names, stack):
            error = float(np.max(np.abs(value - center), initial=0.0)) / scale
            if error > rtol and name not in bad:
                bad[name] = f"largest difference {error:.3g} of the largest magnitude, " \
                            f"array {i}, tolerance {rtol:g}"
    return bad


def pick(ms: Mapping[str, float], order: Sequence[str], auto: str) -> str:
    """The candidate to run, from median forward+backward milliseconds `ms`.

    The fastest (ties: earlier in `order`), unless `auto` (the candidate whose
    program "auto" runs) is within `AUTO_MARGIN` of it.
    """
    fastest = min(ms, key=lambda n: (ms[n], order.index(n)))
    return auto if auto in ms and ms[auto] <= AUTO_MARGIN * ms[fastest] else fastest


def _loss(name: str, spec: Spec) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    def loss(x: jax.Array, w: jax.Array, c: jax.Array) -> jax.Array:
        return jnp.real(jnp.sum(_strategy.run(name, x, w, spec) * c))
    return loss


# ----------------------------------------------------------------------------
# The key and the cache.


@functools.lru_cache(maxsize=8)
def _device_kind(backend: str) -> str:
    return jax.devices(backend)[0].device_kind


@functools.lru_cache(maxsize=1024)
def cache_key(spec: Spec, dtype: str, backend: str) -> str:
    """The configuration as one readable string: everything the timings depend on."""

    pet = spec.preferred_element_type
    if pet is not None:  # jnp.float32 and np.dtype('float32') are one configuration
        spec = dataclasses.replace(spec, preferred_element_type=np.dtype(pet).name)
    return (f"backend={backend}; device={_device_kind(backend)}; jax={jax.__version__}; "
            f"jax_tconv={__version__}; dtype={dtype}; {spec!r}")


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict) or entry.get("choice") not in ALL_CANDIDATES:
        return False
    timings = entry.get("candidates")
    if not isinstance(timings, dict) or not isinstance(timings.get(entry["choice"]), dict):
        return False
    ms = timings[entry["choice"]].get("fwd_bwd_ms")
    return isinstance(ms, int | float) and not isinstance(ms, bool) and math.isfinite(ms)


def _warn(path: pathlib.Path, why: str) -> None:
    warnings.warn(f"jax_tconv tune: ignoring the cache file {path}: {why}; its configurations "
                  f"will be measured again and the file rewritten.", UserWarning, stacklevel=5)


def _read(path: pathlib.Path, *, warn: bool) -> dict[str, Entry]:
    """The valid entries of the cache file (none if it is missing, corrupt or foreign)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, UnicodeDecodeError) as e:
        if warn:
            _warn(path, f"it cannot be read ({e})")
        return {}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        if warn:
            _warn(path, f"it is not valid JSON ({e})")
        return {}
    if not (isinstance(data, dict) and data.get("format") == FORMAT
            and isinstance(data.get("entries"), dict)):
        if warn:
            _warn(path, f"it is not a {FORMAT} (a JSON object with 'format': {FORMAT!r}, "
                        f"'schema': {SCHEMA} and 'entries')")
        return {}
    if data.get("schema") != SCHEMA:
        if warn:
            _warn(path, f"its schema is {data.get('schema')!r}, this jax_tconv reads {SCHEMA}")
        return {}
    entries = {k: v for k, v in data["entries"].items() if isinstance(k, str) and _valid(v)}
    if warn and len(entries) < len(data["entries"]):
        _warn(path, f"{len(data['entries']) - len(entries)} malformed entries")
    return entries


def _write(path: pathlib.Path, new: dict[str, Entry]) -> dict[str, Entry]:
    """Merge `new` into the file under the lock, replace it atomically; the merged entries."""
    with file_lock(path):
        merged = {**_read(path, warn=False), **new}
        write_json(path, {"format": FORMAT, "schema": SCHEMA, "entries": merged})
    return merged


def lookup(spec: Spec, dtype: Any, *, refresh: bool = False,
           rounds: int | None = None, fn: str = "tune_choice") -> tuple[str, Entry, bool]:
    """``(key, entry, measured)`` for `spec`: from memory, else the file, else `measure`."""
    key = cache_key(spec, np.dtype(dtype).name, jax.default_backend())
    path = cache_path()
    with _LOCK:
        entries = _MEMORY.get(str(path))
        if entries is None:
            entries = _MEMORY[str(path)] = _read(path, warn=True)
        if not refresh:
            if key in entries:
                return key, entries[key], False
            # Another process may have measured it since the file was read.
            entries.update(_read(path, warn=False))
            if key in entries:
                return key, entries[key], False
        entry = measure(spec, np.dtype(dtype), rounds=rounds, fn=fn)
        entries[key] = entry
        try:
            _MEMORY[str(path)] = {**_write(path, {key: entry}), **entries}
        except OSError as e:
            warnings.warn(f"jax_tconv tune: could not write the cache file {path} ({e}); the "
                          f"choice is kept in memory for this process only. Set {CACHE_ENV} "
                          f"to a writable file.", UserWarning, stacklevel=4)
        return key, entry, True


def apply(x: jax.Array, w: jax.Array, spec: Spec, *, fn: str = "conv_transpose") -> jax.Array:
    """``method="tune"``: run the cached choice for this configuration (measuring on a miss)."""
    _, entry, _ = lookup(spec, x.dtype, fn=fn)
    return _strategy.run(entry["choice"], x, w, spec)


# ----------------------------------------------------------------------------
# The public face: what "tune" picks.


def tune_choice(x: ArrayLike, w: ArrayLike, *, strides: IntOrSequence = 1,
                padding: Padding = 0, padding_mode: str = "zeros",
                output_padding: IntOrSequence = 0,
                output_shape: tuple[int, ...] | None = None, dilation: IntOrSequence = 1,
                groups: int = 1, dimension_numbers: DimensionNumbers = None,
                precision: Precision = None, preferred_element_type: DTypeLike | None = None,
                refresh: bool = False) -> TuneChoice:
    """What ``conv_transpose(x, w, ..., method="tune")`` runs, and the timings behind it.

    Takes `conv_transpose`'s arguments (arrays or `jax.ShapeDtypeStruct`s:
    only shapes and dtypes are read). On a cache miss, or with
    ``refresh=True``, it measures every strategy now (see docs/tune.md) and
    stores the result; on a hit it reads the cache and measures nothing.

    Returns:
      ``TuneChoice(method, timings, key, measured, seconds, cache)``: the
      strategy (one of ``"vjp"``, ``"matmul"``, ``"dilated"``, ``"phase"``,
      ``"auto"``, or ``"vjp+cl"``, ``"dilated+cl"``, ``"phase+cl"``: run on the
      channels-last form of the layout), each candidate's median
      forward+backward and forward milliseconds, the cache key, whether this
      call measured, the seconds the measurement took, and the cache file.

    Example:
      >>> import jax, jax.numpy as jnp, jax_tconv
      >>> x = jax.ShapeDtypeStruct((1, 4, 4, 8), jnp.float32)
      >>> w = jax.ShapeDtypeStruct((4, 4, 2, 8), jnp.float32)
      >>> choice = jax_tconv.tune_choice(x, w, strides=2, padding=1)  # doctest: +SKIP
      >>> choice.method in choice.timings                              # doctest: +SKIP
      True
    """
    w_ = shaped(w)
    b = batched("tune_choice", shaped(x), w_, dimension_numbers, transposed=True,
                output_shape=output_shape)
    x_, output_shape = b.x, b.output_shape
    spec = transpose_spec(
        "tune_choice", x_, w_, strides=strides, padding=padding, padding_mode=padding_mode,
        output_padding=output_padding, output_shape=output_shape, dilation=dilation,
        groups=groups, dimension_numbers=dimension_numbers, precision=precision,
        preferred_element_type=preferred_element_type)
    key, entry, measured = lookup(spec, x_.dtype, refresh=refresh)
    return _as_choice(key, entry, measured)


def _as_choice(key: str, entry: Entry, measured: bool) -> TuneChoice:
    timings = {}
    for name, t in entry["candidates"].items():
        if isinstance(t, dict):
            timings[name] = Timing(t.get("fwd_bwd_ms"), t.get("fwd_ms"), str(t.get("note", "")))
    return TuneChoice(entry["choice"], timings, key, measured,
                      float(entry.get("seconds", float("nan"))), str(cache_path()))


# ----------------------------------------------------------------------------
# ``python -m jax_tconv tune``.


def tune_layers(layers: Sequence[Any], *, dtype: Any = jnp.float32, rounds: int | None = None,
                refresh: bool = False, print_fn: Callable[[str], None] = print) -> list[TuneChoice]:
    """Tune each `jax_tconv._suite.Layer` (channels-last, as the benchmark builds it).

    Prints a table of the choices and the cache's path.
    """
    results = []
    for layer in layers:
        x = jax.ShapeDtypeStruct((layer.batch, *layer.i, layer.c_in), dtype)
        w = jax.ShapeDtypeStruct((*layer.k, layer.c_out, layer.c_in), dtype)
        spec = transpose_spec("tune", x, w, strides=layer.s, padding=layer.p,
                              output_padding=layer.op, output_shape=None, dilation=1, groups=1,
                              dimension_numbers=None, precision=None,
                              preferred_element_type=None)
        key, entry, measured = lookup(spec, dtype, refresh=refresh, rounds=rounds)
        results.append(_as_choice(key, entry, measured))
    print_fn(format_table([layer.name for layer in layers], results))
    print_fn(f"cache: {cache_path()}")
    return results


def format_table(names: Sequence[str], results: Sequence[TuneChoice]) -> str:
    """One row per layer: the choice, each candidate's forward+backward ms, the cost."""
    cols = [c for c in ALL_CANDIDATES if any(c in r.timings for r in results)]
    lines = ["| layer | choice | " + " | ".join(f"{c} fwd+bwd ms" for c in cols)
             + " | tuned |", "|---|---|" + "---:|" * len(cols) + "---|"]
    for name, r in zip(names, results):
        cells = []
        for c in cols:
            t = r.timings.get(c)
            if t is None:
                cells.append("")
            elif t.fwd_bwd_ms is not None:
                cells.append(f"**{t.fwd_bwd_ms:.3f}**" if c == r.method else f"{t.fwd_bwd_ms:.3f}")
            else:
                cells.append(t.note.split(":")[0].replace("same as ", "= "))
        how = f"measured in {r.seconds:.1f} s" if r.measured else "cached"
        lines.append(f"| {name} | {r.method} | " + " | ".join(cells) + f" | {how} |")
    return "\n".join(lines)
