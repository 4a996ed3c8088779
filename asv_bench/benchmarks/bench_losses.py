"""asv benchmarks: each loss family's forward + gradient, fastxent next to its peers.

Quick run on the current environment (nothing is built):

    cd asv_bench && asv machine --yes && asv run --python=same --quick

(`asv machine --yes` once per machine, else `asv run` exits 1.) `make asv` does the same.
That runs one sample of each of the 60 combinations and takes about 10 minutes on a 2-core
machine, most of it in the NumPy reference (float64, 6-30 s per call at these shapes). A regex
on ``name(param, ...)`` selects combinations, e.g. fastxent only, or fastxent and PyTorch:

    asv run --python=same --quick -b "'fastxent'"
    asv run --python=same --quick -b "'fastxent'|'torch'"

Peers: the NumPy reference (fastxent's backend="numpy", float64 work arrays) and PyTorch CPU
(forward + backward, the formulas of ``fastxent.cli``); a peer that is not available is skipped
by raising NotImplementedError in ``setup``. The batch is ``fastxent._synthetic.make_batch``
(float32, Zipf-distributed labels, about 5 positives per row).
"""

import numpy as np

FAMILIES = (
    "softmax_ce[int]",
    "softmax_ce[multilabel]",
    "bce[multilabel]",
    "sigmoid_focal[multilabel]",
    "softmax_focal[int]",
)
SHAPES = ((1024, 32768), (256, 262144))
IMPLEMENTATIONS = ("fastxent", "numpy-reference", "torch")


class LossForwardGrad:
    """Loss and gradient of a whole batch; fastxent writes the gradient into a reused buffer."""

    params = (FAMILIES, SHAPES, IMPLEMENTATIONS)
    param_names = ("family", "shape", "implementation")
    timeout = 600  # PyTorch's focal loss takes seconds per call at these shapes

    def setup(self, family, shape, implementation):
        try:
            import fastxent
            from fastxent import cli
        except ImportError as exc:
            raise NotImplementedError(f"fastxent not importable: {exc}")
        n_rows, n_classes = shape
        spec = cli.family_by_name(family)
        batch = cli.Batch.make(n_rows, n_classes, seed=0)
        if implementation == "torch":
            try:
                import torch
            except ImportError:
                raise NotImplementedError("torch is not installed")
            import numba

            torch.set_num_threads(numba.get_num_threads())
            self.call = spec.torch_call(torch, batch, n_rows)
        else:
            backend = "numba" if implementation == "fastxent" else "numpy"
            if backend not in fastxent.available_backends():
                raise NotImplementedError(f"backend {backend!r} is not available")
            grad_out = np.empty_like(batch.logits)
            self.call = spec.fastxent_call(fastxent, batch.logits, batch.targets(spec.targets),
                                           grad_out, backend=backend)
        self.call()  # JIT compilation (fastxent) and first-call allocations (peers)

    def time_forward_grad(self, family, shape, implementation):
        self.call()

    def peakmem_forward_grad(self, family, shape, implementation):
        self.call()
