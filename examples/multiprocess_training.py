"""Data-parallel training across processes: jax.distributed, one global mesh, the U-Net.

The U-Net of ``segmentation.py`` (ConvTranspose decoder, synthetic shapes),
small, trained data-parallel by several processes that together form one JAX
program, as the hosts of a TPU pod slice or the nodes of a GPU cluster do:

- every process calls `jax.distributed.initialize`, after which `jax.devices()`
  lists the devices of all processes and one mesh ``("data",)`` spans them
  (`jax.make_mesh`: explicit axes, `jax.set_mesh`);
- each global batch is split over that mesh: every process builds only its
  own rows and hands them to `jax.make_array_from_process_local_data`;
- the weights (and Adam's state) are replicated; one jit-compiled step computes
  the gradients on every device and all-reduces them across processes.

``--processes N`` (default 2) makes the script launch N local CPU processes
itself, each with ``--local-devices`` virtual devices, the coordinator on
127.0.0.1 at a free port; it then trains the same model on one device, in one
process, on the same global batches, and reports whether every process ended
with identical weights and how close losses and weights are to the
single-process run. Each tolerance is judged as in ``sharded_training.py``
(the sums run in another order: float32 losses agree to ~1e-6, Adam can move a
weight whose gradient is at rounding level by up to the learning rate, so the
weights are judged by their disagreement as a share of their change in
training; in float64, ``--x64``, both stay at rounding level, ~1e-15).

On a cluster the same script runs once per host with ``--cluster``: on a TPU
pod slice and under SLURM, `jax.distributed.initialize()` needs no arguments
(it reads the environment); elsewhere pass ``--coordinator HOST:PORT
--num-processes N --process-id I``.

    python examples/multiprocess_training.py                     # 2 local processes
    python examples/multiprocess_training.py --processes 4 --x64
    srun --nodes=2 --ntasks-per-node=1 python examples/multiprocess_training.py --cluster
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from segmentation import UNet, make_shapes

NAME = "multiprocess_training"


# ----------------------------------------------------------------------------
# Training: the same function for one process and for many.


def train(model, params, x, y, batches, *, lr, place, progress=False, desc=""):
    """One Adam step per row of `batches`; `place(xb, yb)` puts a global batch on the devices.

    Returns the losses and the final weights (as NumPy arrays).
    """
    opt = optax.adam(lr)
    step = jax.jit(_common.classifier_step(model, opt))

    opt_state = jax.jit(opt.init)(params)
    losses = []
    for idx in _common.progress(batches, desc=desc, enabled=progress):
        params, opt_state, value = step(params, opt_state, *place(x[idx], y[idx]))
        losses.append(float(value))       # replicated: every process holds the value
    # Replicated too: each process reads its own copy.
    return np.asarray(losses), jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)


def setup(args):
    """Data, the batches of every step, the model and its initial weights: the same everywhere."""
    dtype = np.float64 if args.x64 else np.float32
    x, y = make_shapes(args.train, args.size, noise=0.08, seed=args.seed)
    x = x.astype(dtype)
    rng = np.random.default_rng(args.seed + 1)
    batches = [rng.integers(0, args.train, args.batch) for _ in range(args.steps)]
    model = UNet(decoder="transpose", width=args.width)
    params = model.init(jax.random.key(args.seed), x[:1])
    params = jax.tree.map(lambda a: np.asarray(a, dtype), params)
    return x, y, batches, model, params


# ----------------------------------------------------------------------------
# One process of many.


def use_gloo() -> None:
    """Cross-process collectives on CPU need an implementation; gloo ships with jaxlib."""
    values = jax.config.values
    if "jax_cpu_collectives_implementation" in values and values[
            "jax_cpu_collectives_implementation"] in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def local_rows(sharding: NamedSharding, shape) -> slice:
    """The rows of a global array of `shape` that this process's devices hold (contiguous)."""
    index = sharding.addressable_devices_indices_map(tuple(shape)).values()
    starts = [s[0].start or 0 for s in index]
    stops = [shape[0] if s[0].stop is None else s[0].stop for s in index]
    rows = slice(min(starts), max(stops))
    if rows.stop - rows.start != shape[0] // jax.process_count():
        raise RuntimeError(f"process {jax.process_index()}: its devices hold rows {rows} of "
                           f"{shape[0]}, not one contiguous share")
    return rows


def worker(args) -> None:
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    use_gloo()
    if args.coordinator:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    else:  # a TPU pod slice, SLURM, ...: JAX reads the cluster from the environment
        jax.distributed.initialize()
    pid, count = jax.process_index(), jax.process_count()
    if args.batch % jax.device_count():
        raise SystemExit(f"--batch {args.batch} must be a multiple of the "
                         f"{jax.device_count()} devices of all processes")
    x, y, batches, model, params = setup(args)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    data = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    rows = local_rows(data, (args.batch,))

    def place(xb, yb):
        # This process builds only its own rows of the global batch.
        return tuple(jax.make_array_from_process_local_data(data, a[rows], a.shape)
                     for a in (xb, yb))

    with jax.set_mesh(mesh):
        params = jax.tree.map(lambda a: jax.make_array_from_callback(
            a.shape, replicated, lambda index, a=a: a[index]), params)
        print(f"process {pid} of {count}: {jax.local_device_count()} of {jax.device_count()} "
              f"{jax.devices()[0].platform} devices, mesh {dict(mesh.shape)} "
              f"({mesh.axis_types[0]}), its rows {rows.start}:{rows.stop} of each global "
              f"batch of {args.batch}", flush=True)
        t0 = time.perf_counter()
        losses, weights = train(model, params, x, y, batches, lr=args.lr, place=place)
    path = args.out / f"{NAME}_process{pid}.npz"
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(weights)}
    np.savez(path, losses=losses, seconds=time.perf_counter() - t0, **flat)
    print(f"process {pid}: losses {losses[0]:.6f} -> {losses[-1]:.6f} in "
          f"{time.perf_counter() - t0:.1f} s; wrote {path}", flush=True)


# ----------------------------------------------------------------------------
# The launcher: N local processes, then one process alone, then the comparison.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_command(args, pid: int, port: int) -> list[str]:
    keep = ["--seed", str(args.seed), "--steps", str(args.steps), "--batch", str(args.batch),
            "--size", str(args.size), "--train", str(args.train), "--width", str(args.width),
            "--lr", str(args.lr), "--out", str(args.out), "--no-progress"]
    keep += ["--x64"] if args.x64 else []
    return [sys.executable, __file__, "--cluster", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", str(args.processes), "--process-id", str(pid), *keep]


def launch(args, logs) -> list[subprocess.Popen]:
    """Start the worker processes; each writes its stdout and stderr to its pair of `logs`."""
    port = free_port()
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                   os.environ.get("XLA_FLAGS", ""))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count="
                         f"{args.local_devices}".strip())
    return [subprocess.Popen(worker_command(args, pid, port), env=env, stdout=out, stderr=err)
            for pid, (out, err) in zip(range(args.processes), logs)]


def collect(procs, logs) -> None:
    """Wait for every worker; relay its output; exit with its error if one failed.

    No time limit: a slower machine only waits longer. A worker that fails would
    leave the others waiting for it in their next collective, so the first failure
    stops them all, and it is the one reported.
    """
    failed = None
    while True:
        codes = [proc.poll() for proc in procs]          # every one, each time
        if failed is None:
            failed = next((pid for pid, code in enumerate(codes) if code), None)
        if all(code is not None for code in codes):
            break
        if failed is not None:
            for proc, code in zip(procs, codes):
                if code is None:
                    proc.kill()
        time.sleep(0.2)
    for out, _ in logs:
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith("process"):
                print(f"  {line.split('; wrote')[0]}")
    if failed is not None:
        err = logs[failed][1]
        err.seek(0)
        raise SystemExit(f"process {failed} failed (exit {procs[failed].returncode}):\n"
                         f"{err.read()[-4000:]}")


def load(path: Path):
    with np.load(path) as f:
        return f["losses"], {k: f[k] for k in f.files if k not in ("losses", "seconds")}


def draw(path, losses, reference, title):
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
    ax0.plot(reference, label="1 process, 1 device", lw=1.2)
    ax0.plot(losses, "--", label="every process (identical)", lw=1.2)
    ax0.set_xlabel("step")
    ax0.set_ylabel("training loss (cross-entropy)")
    ax0.legend(fontsize=9)
    ax0.set_title("losses", fontsize=10)
    ax1.semilogy(np.maximum(np.abs(losses - reference), 1e-18), lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("|loss - loss of one process| (1e-18 where 0)")
    ax1.set_title("difference from the single-process run", fontsize=10)
    fig.suptitle(title, fontsize=12)
    return _common.save_figure(fig, path)


def launcher(args, p) -> dict:
    clock = _common.Clock()
    devices = args.processes * args.local_devices
    if args.batch % devices:
        p.error(f"--batch {args.batch} must be a multiple of --processes x --local-devices "
                f"= {devices}")
    for old in args.out.glob(f"{NAME}_process*.npz"):
        old.unlink()
    print(f"{args.processes} processes x {args.local_devices} CPU devices, coordinator on "
          f"127.0.0.1; global batch {args.batch}, {args.steps} steps")
    # Files, not pipes: nobody reads a worker's output until it ends, and a pipe can fill.
    logs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))
            for _ in range(args.processes)]
    procs = launch(args, logs)
    try:
        # Meanwhile, the same training in this process alone, on one device.
        if args.x64:
            jax.config.update("jax_enable_x64", True)
        x, y, batches, model, params = setup(args)
        device = jax.devices()[0]
        t0 = time.perf_counter()
        reference, ref_weights = train(
            model, jax.device_put(params, device), x, y, batches, lr=args.lr,
            place=lambda xb, yb: jax.device_put((xb, yb), device), progress=args.progress,
            desc="1 process")
        ref_seconds = time.perf_counter() - t0
    finally:
        collect(procs, logs)
        for files in logs:
            for f in files:
                f.close()
    paths = sorted(args.out.glob(f"{NAME}_process*.npz"))
    runs = [load(path) for path in paths]
    losses, weights = runs[0]
    identical = all(np.array_equal(other, losses) and w.keys() == weights.keys()
                    and all(np.array_equal(w[k], weights[k]) for k in weights)
                    for other, w in runs[1:])
    ref_flat = {jax.tree_util.keystr(k): v
                for k, v in jax.tree_util.tree_leaves_with_path(ref_weights)}
    init_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    keys = sorted(weights)
    loss_diff = float(np.max(np.abs(losses - reference)))
    weight_diff = max(_common.max_diff(weights[k], ref_flat[k]) for k in keys)
    disagreement = _common.weight_disagreement([weights[k] for k in keys],
                                               [ref_flat[k] for k in keys],
                                               [init_flat[k] for k in keys])
    loss_tol = args.loss_tolerance if args.loss_tolerance is not None else (
        1e-10 if args.x64 else 1e-4)
    weight_tol = args.weight_tolerance if args.weight_tolerance is not None else (
        1e-10 if args.x64 else 0.1)
    verdict = {True: "equal", False: "DIFFERENT"}
    print(f"\nevery process ends with the same weights and losses: "
          f"{'yes (bit for bit)' if identical else 'NO'}")
    print(f"{args.processes} processes against 1 process ({ref_seconds:.1f} s)\n"
          f"  losses:        max |diff| {loss_diff:.1e}; tolerance {loss_tol:g}: "
          f"{verdict[loss_diff <= loss_tol]}\n"
          f"  final weights: max |diff| {weight_diff:.1e}, {disagreement:.1e} of their change "
          f"in training; tolerance {weight_tol:g}: {verdict[disagreement <= weight_tol]}")
    dtype = "float64" if args.x64 else "float32"
    report = {"processes": args.processes, "local_devices": args.local_devices,
              "devices": devices, "steps": args.steps, "batch": args.batch, "dtype": dtype,
              "identical_across_processes": bool(identical),
              "max_loss_diff": loss_diff, "max_weight_diff": weight_diff,
              "weight_disagreement": disagreement, "loss_tolerance": loss_tol,
              "weight_tolerance": weight_tol, "losses_equal": loss_diff <= loss_tol,
              "weights_equal": disagreement <= weight_tol,
              "losses": losses.tolist(), "reference_losses": reference.tolist()}
    title = (f"U-Net (ConvTranspose decoder), {args.processes} processes x "
             f"{args.local_devices} CPU devices vs 1, {args.steps} steps, batch {args.batch}, "
             f"{dtype}")
    written = paths + [draw(args.out / f"{NAME}.png", losses, reference, title),
                       _common.write_json(args.out / f"{NAME}.json", report)]
    _common.written(written)
    clock.done(NAME)
    return report


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=2,
                   help="local CPU processes to launch (each runs this script with --cluster)")
    p.add_argument("--local-devices", type=int, default=2,
                   help="virtual CPU devices per launched process")
    p.add_argument("--cluster", action="store_true",
                   help="run as one process of a multi-process job (a TPU pod slice's host, a "
                        "SLURM task): jax.distributed.initialize() from the environment, or "
                        "from --coordinator, --num-processes and --process-id")
    p.add_argument("--coordinator", help="HOST:PORT of process 0 (with --cluster)")
    p.add_argument("--num-processes", type=int, help="processes in the job (with --cluster)")
    p.add_argument("--process-id", type=int, help="this process's id (with --cluster)")
    p.add_argument("--steps", type=int, default=20, help="training steps")
    p.add_argument("--batch", type=int, default=16,
                   help="global batch size (a multiple of all devices of all processes)")
    p.add_argument("--size", type=int, default=16, help="image side")
    p.add_argument("--train", type=int, default=256, help="training images")
    p.add_argument("--width", type=int, default=4, help="channels of the U-Net's first level")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--x64", action="store_true", help="train in float64")
    p.add_argument("--loss-tolerance", type=float, default=None,
                   help="largest |loss difference| from one process reported as equal "
                        "(default: 1e-4 in float32, 1e-10 with --x64)")
    p.add_argument("--weight-tolerance", type=float, default=None,
                   help="largest disagreement of the final weights with one process, as a "
                        "share of their change in training, reported as equal (default: 0.1 "
                        "in float32, 1e-10 with --x64)")
    args = _common.parse(p, argv)
    if args.cluster:
        return worker(args)
    if args.processes < 1 or args.local_devices < 1:
        p.error("--processes and --local-devices must be at least 1")
    return launcher(args, p)


if __name__ == "__main__":
    main()
