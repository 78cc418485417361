import contextlib
import os

# One compute thread for the whole suite, set before torch/numpy load their thread pools. The tests
# run tiny tensors (a few hundred tokens), where a multi-threaded op spends most of its time in
# thread start-up and synchronisation: with the default (one thread per core) the suite took 56 min
# on a loaded 2-core machine, a third of that with one thread. The environment variables reach the
# subprocesses the tests spawn (jobs, sweeps), which inherit os.environ. AVGGT_TEST_THREADS changes
# the count; a test that needs more threads asks for them with @pytest.mark.threads(n).
TEST_THREADS = int(os.environ.get("AVGGT_TEST_THREADS", "1"))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(TEST_THREADS)

# Tests never reach the network: hub lookups must fail fast and say so.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(TEST_THREADS)
# set_num_interop_threads raises once inter-op work ran (e.g. a plugin used torch first)
with contextlib.suppress(RuntimeError):
    torch.set_num_interop_threads(TEST_THREADS)


# Modules whose fixtures hold a full-size (1B-parameter) model, about 11.5 GB each: under
# pytest-xdist (`make test` runs two workers) they share one worker, so that two of them are never
# in memory at once on a 24 GB machine.
LARGE_MODEL_MODULES = ("test_vggt_model.py", "test_pi3_model.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in LARGE_MODEL_MODULES:
            item.add_marker(pytest.mark.xdist_group("large_models"))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@contextlib.contextmanager
def all_cores():
    """Every core for a large tensor job inside a test (the 1B-parameter test-vector fixtures:
    generating 1.2e9 recipe weights and one forward are big ops, not thread-bound tiny ones)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(os.cpu_count() or 1, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_threads(request):
    """The marked count for this test, and the suite's count again afterwards: a job run in-process
    with `threads=N` must not leave N threads behind for the tests after it."""
    marker = request.node.get_closest_marker("threads")
    torch.set_num_threads(int(marker.args[0]) if marker else TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def vggt_small():
    from avggt_bench.models import build_model

    return build_model("vggt_small")
