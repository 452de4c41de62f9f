import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["eager", "jit"])
def transform(request):
    """Run a function eagerly and under jax.jit (configuration closed over, so static)."""
    return (lambda f: f) if request.param == "eager" else jax.jit


# Hypothesis profiles (tests/test_properties.py). "ci" is the default: fixed seeds
# (derandomize) so the default suite is reproducible and fast on a 2-core CPU.
# JAX_TCONV_HYPOTHESIS_PROFILE=long runs a randomised hunt (about 20 minutes there).
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", max_examples=500, deadline=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("JAX_TCONV_HYPOTHESIS_PROFILE", "ci"))


# Scripts that live beside the tests (fixture writers, subprocess helpers) are not test
# modules; --doctest-modules would import them, and the fixture writers need torch.
collect_ignore = ["make_torch_fixtures.py", "make_golden.py", "make_golden_modes.py",
                  "crash_hunt.py", "sharding_check.py", "layers_sharding_check.py"]
