"""Deterministic bounded minimisation of a torch loss with SciPy's L-BFGS-B."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from musculo import logger


def minimize_lbfgsb(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    lower: Sequence[float | None] | None = None,
    max_iter: int = 200,
    tol: float = 1e-9,
) -> dict[str, float]:
    """Minimise ``loss_fn()`` over the tensors ``params`` (in place) with L-BFGS-B.

    ``lower`` gives an optional lower bound per tensor (e.g. 0 for non-negative weights); gradients
    come from torch autograd. Returns ``{"loss": final loss, "iterations": n, "evaluations": n}``.
    """
    params = list(params)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    lows = list(lower) if lower is not None else [None] * len(params)
    bounds = [(lo, None) for lo, n in zip(lows, sizes, strict=True) for _ in range(n)]

    def assign(x: np.ndarray) -> None:
        offset = 0
        with torch.no_grad():
            for p, shape, n in zip(params, shapes, sizes, strict=True):
                p.copy_(torch.as_tensor(x[offset:offset + n], dtype=p.dtype).reshape(shape))
                offset += n

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        assign(x)
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        grad = np.concatenate([
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).numpy()
            for p in params
        ])
        return float(loss.detach()), grad.astype(float)

    x0 = np.concatenate([p.detach().reshape(-1).numpy() for p in params]).astype(float)
    if not len(x0):
        return {"loss": float(loss_fn().detach()), "iterations": 0, "evaluations": 1}
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": int(max_iter), "ftol": tol, "gtol": 1e-10})
    assign(res.x)
    logger.debug("L-BFGS-B: %s after %d iterations (loss %.6g)", res.message, res.nit, res.fun)
    return {"loss": float(res.fun), "iterations": int(res.nit), "evaluations": int(res.nfev)}


@contextlib.contextmanager
def torch_settings(*, threads: int) -> Iterator[None]:
    """Deterministic torch algorithms (and a thread count when > 0) inside the block, restored after.

    Every torch fit of musculo runs inside it, so the same seed gives the same numbers.
    """
    det = torch.are_deterministic_algorithms_enabled()
    n_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(n_threads)
