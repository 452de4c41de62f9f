"""Data-parallel (and spatially sharded) training with jax.sharding, on 8 virtual CPU devices.

The U-Net of ``segmentation.py`` (ConvTranspose decoder, synthetic shapes)
trained three ways from the same initial weights on the same batches:

1. on one device;
2. data-parallel: a `Mesh` of all devices along one axis ``"data"``; each
   batch is split across devices (``NamedSharding(mesh, P("data"))``), the
   weights are replicated (``P()``), and one jit-compiled step computes the
   gradients on every shard and all-reduces them, as on a TPU pod slice;
3. data- and spatially parallel: a 2-D mesh ``("data", "space")``; every
   image's rows are split too (``P("data", "space")``), so each convolution and
   transposed convolution works on a band of rows and XLA exchanges the halos.

The losses of 2 and 3 equal those of 1 up to float rounding (the reductions
run in another order). The script judges two quantities, each against its own
tolerance: the largest difference of the loss curves, and how far the final
weights disagree as a share of how far training moved them
(``|w - w_1| / |w_1 - w_0|``, norms over all parameters). The weights get a
relative measure because Adam divides every gradient by its running RMS: a
weight whose gradient is at rounding level still moves by up to the learning
rate per step, in a direction the rounding decides, so in float32 single
weights of two runs may differ by about the learning rate while their losses
agree to 1e-5. On CPU the devices are virtual: the script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is imported
(unless XLA_FLAGS already asks for a count), so the same code runs on 8 real
accelerators unchanged; on a machine with a single accelerator it uses the
virtual CPU devices. Nothing here is faster on a 2-core CPU; it shows
that the program is right.

    python examples/sharded_training.py
"""

from __future__ import annotations

import os

# Before JAX is imported: 8 virtual CPU devices unless the user asked for a count already.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import _common  # noqa: E402
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from segmentation import UNet, make_shapes  # noqa: E402


def train(model, params, x, y, batches, *, lr, device, mesh=None, data_spec=None, progress,
          desc):
    """Run one step per row of `batches` (indices); return the losses and the final weights.

    Without `mesh`, everything lives on `device`. With it, the images and labels
    are sharded by `data_spec` and the weights (and Adam state) replicated.
    """
    opt = optax.adam(lr)
    step = _common.classifier_step(model, opt)

    if mesh is None:
        x_place = y_place = w_place = device
        step = jax.jit(step)
    else:
        w_place = NamedSharding(mesh, P())                       # replicated
        x_place = NamedSharding(mesh, data_spec)
        y_place = NamedSharding(mesh, P(*data_spec[:3]))         # labels: (N, H, W)
        step = jax.jit(step, in_shardings=(w_place, w_place, x_place, y_place),
                       out_shardings=(w_place, w_place, w_place))
    params = jax.device_put(params, w_place)
    opt_state = jax.device_put(opt.init(params), w_place)
    losses, shard_shape = [], None
    for idx in _common.progress(batches, desc=desc, enabled=progress):
        xb, yb = jax.device_put(x[idx], x_place), jax.device_put(y[idx], y_place)
        shard_shape = xb.addressable_shards[0].data.shape
        params, opt_state, value = step(params, opt_state, xb, yb)
        losses.append(value)
    return np.asarray(losses, np.float64), jax.device_get(params), shard_shape


def verdict(ok: bool) -> str:
    return "equal" if ok else "DIFFERENT"


def draw(path, curves, title):
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
    base = curves["1 device"]
    for name, losses in curves.items():
        ax0.plot(losses, label=name, lw=1.2, ls="-" if name == "1 device" else "--")
    ax0.set_xlabel("step")
    ax0.set_ylabel("training loss (cross-entropy)")
    ax0.set_title("losses", fontsize=10)
    ax0.legend(fontsize=9)
    for name, losses in curves.items():
        if name != "1 device":
            ax1.semilogy(np.maximum(np.abs(losses - base), 1e-18), label=name, lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("|loss - loss on 1 device| (1e-18 where 0)")
    ax1.set_title("difference from the single-device run", fontsize=10)
    ax1.legend(fontsize=9)
    fig.suptitle(title, fontsize=12)
    return _common.save_figure(fig, path)


def main(argv=None) -> dict:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="training steps per run")
    p.add_argument("--batch", type=int, default=32,
                   help="global batch size (a multiple of the data axis size)")
    p.add_argument("--size", type=int, default=26, help="image side")
    p.add_argument("--train", type=int, default=512, help="training images")
    p.add_argument("--width", type=int, default=8, help="channels of the U-Net's first level")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--space", type=int, default=2,
                   help="devices along the image rows in the 2-D mesh (1: skip that run)")
    p.add_argument("--loss-tolerance", type=float, default=None,
                   help="largest |loss difference| reported as equal (default: 1e-4 in "
                        "float32, 1e-10 with --x64)")
    p.add_argument("--weight-tolerance", type=float, default=None,
                   help="largest disagreement of the final weights, as a share of their change "
                        "in training, reported as equal (default: 0.1 in float32, 1e-10 with "
                        "--x64)")
    p.add_argument("--gspmd", action="store_true",
                   help="partition with GSPMD instead of JAX's default Shardy (see the docs: "
                        "Shardy gets the 'space' run wrong when a level holds one row per "
                        "device, e.g. --size 12)")
    p.add_argument("--x64", action="store_true",
                   help="train in float64, where reordered sums differ by ~1e-16, not ~1e-7")
    args = _common.parse(p, argv)
    clock = _common.Clock()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    if args.gspmd:
        jax.config.update("jax_use_shardy_partitioner", False)

    devices = jax.devices()
    if len(devices) < 2:              # one accelerator: use the 8 virtual CPU devices instead
        devices = jax.devices("cpu")
    n = len(devices)
    partitioner = "Shardy" if jax.config.jax_use_shardy_partitioner else "GSPMD"
    print(f"{n} devices: {devices[0].platform} ({os.environ.get('XLA_FLAGS', '')}), "
          f"{partitioner} partitioner")
    if args.batch % n:
        p.error(f"--batch {args.batch} must be a multiple of the {n} devices")
    # float32: over the default 30 steps rounding moved the losses by up to 3e-5 and the weights
    # by up to 1.4% of their change in training (docs/examples.md); a wrong gradient moves the
    # weights by ~100%. float64: both stay at rounding level, ~1e-15.
    loss_tol = args.loss_tolerance if args.loss_tolerance is not None else (
        1e-10 if args.x64 else 1e-4)
    weight_tol = args.weight_tolerance if args.weight_tolerance is not None else (
        1e-10 if args.x64 else 0.1)
    dtype = np.float64 if args.x64 else np.float32
    x, y = make_shapes(args.train, args.size, noise=0.08, seed=args.seed)
    x = x.astype(dtype)
    rng = np.random.default_rng(args.seed + 1)
    batches = [rng.integers(0, args.train, args.batch) for _ in range(args.steps)]
    model = UNet(decoder="transpose", width=args.width)
    params = jax.tree.map(lambda a: a.astype(dtype), model.init(jax.random.key(args.seed), x[:1]))

    runs = {"1 device": dict(mesh=None),
            f"data-parallel, mesh ({n},)": dict(
                mesh=Mesh(np.array(devices), ("data",)), data_spec=P("data", None, None, None))}
    if args.space > 1:
        if n % args.space:
            p.error(f"--space {args.space} must divide the {n} devices")
        mesh = Mesh(np.array(devices).reshape(n // args.space, args.space), ("data", "space"))
        runs[f"data x space, mesh ({n // args.space}, {args.space})"] = dict(
            mesh=mesh, data_spec=P("data", "space", None, None))

    curves, weights, report = {}, {}, {}
    for name, kwargs in runs.items():
        timer = _common.Clock()
        curves[name], weights[name], shard = train(
            model, params, x, y, batches, lr=args.lr, device=devices[0], progress=args.progress,
            desc=name, **kwargs)
        report[name] = {"seconds": round(timer.seconds(), 1), "shard_shape": list(shard)}
        print(f"{name:<32s} per-device input shard {tuple(shard)}, {timer.seconds():.1f} s")

    base, base_w = curves["1 device"], weights["1 device"]
    print()
    for name in list(runs)[1:]:
        loss_diff = float(np.max(np.abs(curves[name] - base)))
        weight_diff = max(_common.max_diff(a, b) for a, b in
                          zip(jax.tree.leaves(weights[name]), jax.tree.leaves(base_w)))
        disagreement = _common.weight_disagreement(weights[name], base_w, params)
        report[name].update(max_loss_diff=loss_diff, max_weight_diff=weight_diff,
                            weight_disagreement=disagreement,
                            losses_equal=loss_diff <= loss_tol,
                            weights_equal=disagreement <= weight_tol)
        print(f"{name}\n  losses:        max |diff| {loss_diff:.1e}; tolerance {loss_tol:g}: "
              f"{verdict(loss_diff <= loss_tol)}\n"
              f"  final weights: max |diff| {weight_diff:.1e}, {disagreement:.1e} of their change "
              f"in training; tolerance {weight_tol:g}: {verdict(disagreement <= weight_tol)}")
    report["1 device"]["final_loss"] = float(base[-1])
    title = (f"U-Net (ConvTranspose decoder) on {n} {devices[0].platform} devices, "
             f"{args.steps} steps, batch {args.batch}, {np.dtype(dtype).name}")
    paths = [draw(args.out / "sharded_training.png", curves, title),
             _common.write_json(args.out / "sharded_training.json",
                                {"devices": n, "steps": args.steps, "dtype": np.dtype(dtype).name,
                                 "partitioner": partitioner, "runs": report,
                                 "loss_tolerance": loss_tol, "weight_tolerance": weight_tol})]
    _common.written(paths)
    clock.done("sharded_training")
    return report


if __name__ == "__main__":
    main()
