import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["eager", "jit"])
def transform(request):
    """Run a function eagerly and under jax.jit (configuration closed over, so static)."""
    return (lambda f: f) if request.param == "eager" else jax.jit
