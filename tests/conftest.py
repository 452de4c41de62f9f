import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# "auto" on CPU decides from this machine's calibrated rates (jax_tconv._calibrate); the
# suite fixes them, so that its choices are the same on every machine (rates of the order
# measured on a 2-core Xeon: products win on wide DCGAN-like layers, convolutions on narrow
# ones). tests/test_calibrate.py measures for real.
os.environ.setdefault("JAX_TCONV_RATES", "dot=150,conv=100,temp=2")


@pytest.fixture(params=["eager", "jit"])
def transform(request):
    """Run a function eagerly and under jax.jit (configuration closed over, so static)."""
    return (lambda f: f) if request.param == "eager" else jax.jit


# Hypothesis profiles (tests/test_properties.py). "ci" is the default: fixed seeds
# (derandomize) so the default suite is reproducible and fast on a 2-core CPU.
# JAX_TCONV_HYPOTHESIS_PROFILE=long runs a randomised hunt (about 20 minutes there), from one
# seed for the whole run: JAX_TCONV_HYPOTHESIS_SEED, or --hypothesis-seed, or else drawn
# here, printed in the header and handed to every xdist worker. The same seed draws the same
# examples for each test (the long profile keeps no example database, which would replay old
# failures first). JAX_TCONV_EXAMPLE_LOG=DIR records each example before it runs
# (test_properties.py), so that one which aborts the process can be replayed exactly.
# docs/xla-bugs.md has the commands.
import random  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

SEED_VAR = "JAX_TCONV_HYPOTHESIS_SEED"
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", max_examples=500, deadline=None, database=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("JAX_TCONV_HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Fix the long profile's seed before Hypothesis's plugin reads --hypothesis-seed; xdist
    workers receive the controller's options, so all of them use it."""
    if settings.get_current_profile_name() != "long":
        return
    seed = getattr(config.option, "hypothesis_seed", None)
    if seed is None:
        seed = os.environ.get(SEED_VAR) or str(random.SystemRandom().randrange(2**32))
        config.option.hypothesis_seed = seed
    os.environ[SEED_VAR] = str(seed)


def pytest_report_header(config):
    profile = settings.get_current_profile_name()
    if profile != "long":
        return f"jax_tconv: hypothesis profile {profile!r} (derandomized)"
    log = os.environ.get("JAX_TCONV_EXAMPLE_LOG")
    return (f"jax_tconv: hypothesis profile 'long', seed {os.environ[SEED_VAR]} (rerun the "
            f"same draws with {SEED_VAR}={os.environ[SEED_VAR]}); "
            + (f"examples recorded under {log}" if log else
               "set JAX_TCONV_EXAMPLE_LOG=DIR to record each example before it runs"))


# Scripts that live beside the tests (fixture writers, subprocess helpers) are not test
# modules; --doctest-modules would import them, and the fixture writers need torch.
collect_ignore = ["make_torch_fixtures.py", "make_golden.py", "make_golden_modes.py",
                  "crash_hunt.py", "sharding_check.py", "layers_sharding_check.py"]
