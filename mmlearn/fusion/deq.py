"""Deep equilibrium fusion: the fused feature is the fixed point of a fusion layer, trained by implicit differentiation."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion

SOLVERS = ("anderson", "iteration")


#: set by :func:`solver_warm_start`; the modules that keep a solution for the next solve
_WARM_START = False
_WARM_MODULES: weakref.WeakSet = weakref.WeakSet()


@contextmanager
def solver_warm_start():
    """Inside the block, every :class:`DEQFusion` solve without grad starts from that module's previous
    solution when the batch size matches (else from zero), instead of from zero.

    For sweeps that evaluate the same rows under slowly changing inputs (a robustness curve: noise 0, 0.1,
    ...), the previous level's fixed point is close to the next one, so Anderson needs fewer steps. Outputs
    stay per sample (row ``b`` starts from row ``b``'s previous solution) and equal the cold-start fixed point
    within the solver's tolerance. Nested use is allowed; the memory is dropped on exit.
    """
    global _WARM_START
    before = _WARM_START
    _WARM_START = True
    try:
        yield
    finally:
        _WARM_START = before
        if not before:
            for module in list(_WARM_MODULES):
                module._warm_z = None
            _WARM_MODULES.clear()


# ---------------------------------------------------------------------------------------------
# fixed-point solvers: find z with f(z) = z, for z of shape (B, n), every sample on its own
# ---------------------------------------------------------------------------------------------


def _row_residuals(fz: Tensor, z: Tensor) -> Tensor:
    """Relative residual per sample, ``||f(z)_b - z_b|| / ||f(z)_b||``: (B,) (the DEQ code's "rel" mode, per row)."""
    return (fz - z).flatten(1).norm(dim=1) / (fz.flatten(1).norm(dim=1) + 1e-9)


class _PerSample:
    """Per-sample bookkeeping of a solve: each row's best iterate, its residual, and which rows still iterate.

    A row stops (is frozen) as soon as its own residual is below ``tol``: its best iterate is final and its
    later iterates, if any, are never read. The solvers keep a *working set* (``rows``, indices into the
    batch; ``live`` marks the ones still iterating) and drop the stopped rows from it once they are a quarter
    of it (:meth:`compact`), evaluating ``f`` on the working set only when ``f`` offers ``restrict`` (see
    :func:`anderson`). Since ``f`` acts on each row separately, a row's iterates, and so its result, do not
    depend on the other rows of the batch (up to floating-point rounding).
    """

    def __init__(self, z0: Tensor, tol: float):
        B = z0.shape[0]
        self.tol = tol
        self.best = z0.reshape(B, -1).clone()  # (B, n): each row's iterate with the lowest residual
        self.best_res = torch.full((B,), math.inf, dtype=z0.dtype, device=z0.device)
        self.best_k = torch.zeros(B, dtype=torch.long, device=z0.device)
        self.iters = torch.zeros(B, dtype=torch.long, device=z0.device)
        self.rows = torch.arange(B, device=z0.device)  # the working set
        self.live = torch.ones(B, dtype=torch.bool, device=z0.device)  # (W,): still iterating
        self.frozen_worst = -math.inf  # the worst residual among stopped rows (for the trace)
        self.trace: list[float] = []

    def record(self, z: Tensor, res: Tensor, k: int) -> None:
        """Evaluation ``k`` of ``f`` gave residuals ``res`` (W,) at iterates ``z`` (W, n) of the working set;
        stopped rows are left alone."""
        live = self.live
        whole = self.rows.numel() == self.best_res.numel()  # the working set is still the batch, in order
        if bool(live.all()):
            rows = self.rows
        else:
            rows, z, res, whole = self.rows[live], z[live], res[live], False
        self.iters[rows] = k
        better = res < self.best_res[rows]  # NaN never counts as better
        if whole and bool(better.all()):  # the common first steps: every row improved, no indexing needed
            self.best.copy_(z)
            self.best_res.copy_(res)
            self.best_k.fill_(k)
        else:
            idx = rows[better]
            self.best[idx] = z[better]
            self.best_res[idx] = res[better]
            self.best_k[idx] = k
        # the worst residual in the batch at this step (stopped rows: the one they stopped with)
        self.trace.append(max(float(res.max()), self.frozen_worst))
        done = res < self.tol  # NaN keeps iterating (until max_iter)
        if bool(done.any()):
            self.frozen_worst = max(self.frozen_worst, float(self.best_res[rows[done]].max()))
            self.live[live.nonzero().squeeze(1)[done]] = False

    def running(self) -> bool:
        return bool(self.live.any())

    def compact(self) -> Tensor | None:
        """Drop the stopped rows from the working set once they are a quarter of it (each step would cost
        more in copies than the rows it saves). Returns the kept positions, or None when nothing changed."""
        stopped = int((~self.live).sum())
        if 4 * stopped < self.live.numel() or stopped == 0:
            return None
        keep = self.live.nonzero().squeeze(1)
        self.rows, self.live = self.rows[keep], self.live[keep]
        return keep

    def info(self, shape) -> tuple[Tensor, dict]:
        return self.best.reshape(shape), {
            "residual": float(self.best_res.max()),  # the worst sample's
            "iterations": int(self.iters.max()),  # evaluations of f the slowest sample needed
            "best_iteration": int(self.best_k.max()),
            "trace": self.trace,
            "residuals": self.best_res,  # (B,) per sample
            "sample_iterations": self.iters,  # (B,)
            "converged": self.best_res < self.tol,  # (B,) bool
        }


class _WorkingMap:
    """``f`` on the working set's rows, flat ``(W, n)`` in and out.

    If ``f`` has ``f.restrict(rows)`` (the same map for those rows of the batch only, as
    :meth:`DEQFusion.iteration_map` gives), only the working set is evaluated. Otherwise ``f`` sees the whole
    batch, the rows outside the working set holding their last iterate (their images are discarded).
    """

    def __init__(self, f: Callable[[Tensor], Tensor], z0: Tensor):
        self.f, self.shape = f, z0.shape
        self.restrict = getattr(f, "restrict", None)
        self.g = f
        self.rows: Tensor | None = None  # None: every row
        self.full = None if self.restrict is not None else z0.reshape(z0.shape[0], -1).clone()

    def __call__(self, z: Tensor) -> Tensor:
        if self.rows is None:
            return self.f(z.reshape(self.shape)).reshape(z.shape)
        if self.restrict is not None:
            return self.g(z.reshape(-1, *self.shape[1:])).reshape(z.shape)
        self.full[self.rows] = z
        return self.f(self.full.reshape(self.shape)).reshape(self.full.shape)[self.rows]

    def set_rows(self, rows: Tensor) -> None:
        self.rows = rows
        if self.restrict is not None:
            self.g = self.restrict(rows)


def _check_solver_options(max_iter, tol) -> tuple[int, float]:
    max_iter = check_number(max_iter, "max_iter", low=1, integer=True)
    tol = check_number(tol, "tol", low=0.0, low_open=True)
    return max_iter, tol


def fixed_point_iteration(f: Callable[[Tensor], Tensor], z0: Tensor, *, max_iter: int = 50, tol: float = 1e-3):
    """Plain (Picard) iteration ``z <- f(z)``, per sample, until each sample's relative residual is below ``tol``.

    ``f`` must act on each row of ``z`` (B, ...) separately. Each row iterates
    until its own residual ``||f(z_b) - z_b|| / ||f(z_b)||`` is below ``tol``
    (then it is frozen) or ``max_iter`` evaluations of ``f`` are spent, so one
    hard row neither stops early nor changes the others. If ``f`` has a
    ``restrict(rows)`` method (the same map on those rows only), stopped rows
    are soon no longer evaluated.

    Returns ``(z, info)``: ``z`` holds each row's iterate with the lowest
    residual seen; ``info`` has ``residual`` (the worst row's, float),
    ``iterations`` (evaluations of ``f``, the slowest row's), ``trace`` (the
    worst residual per evaluation), and per row ``residuals``,
    ``sample_iterations`` and ``converged``. Converges when ``f`` is a
    contraction. ``max_iter`` must be >= 1 (with 1, ``f`` is evaluated once
    and ``z0`` is returned with its residual); otherwise a ``ValueError``.
    """
    max_iter, tol = _check_solver_options(max_iter, tol)
    track = _PerSample(z0, tol)
    g = _WorkingMap(f, z0)
    z = z0.reshape(z0.shape[0], -1)
    for k in range(1, max_iter + 1):
        fz = g(z)
        track.record(z, _row_residuals(fz, z), k)
        if not track.running():
            break
        z = fz
        keep = track.compact()
        if keep is not None:  # a quarter of the rows have stopped: iterate the others only
            z = z[keep]
            g.set_rows(track.rows)
    return track.info(z0.shape)


def anderson(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    *,
    max_iter: int = 50,
    tol: float = 1e-3,
    m: int = 6,
    lam: float = 1e-4,
    beta: float = 1.0,
):
    """Anderson acceleration (Anderson 1965; as in the DEQ code, Bai et al. 2019) for ``z = f(z)``.

    Keeps the last ``m`` iterates ``X`` and their images ``F = f(X)``, and
    takes the next iterate as the mix of them whose residuals ``G = F - X``
    cancel best, per sample (each row has its own history and its own
    ``alpha``: nothing is mixed across samples)::

        alpha = argmin_{sum alpha = 1} || alpha^T G ||^2 + lam s ||alpha||^2    (B, p)
        z_next = beta * alpha^T F + (1 - beta) * alpha^T X

    The constrained least squares is solved as the bordered linear system
    ``[[0, 1^T], [1, G G^T + lam s I]] [nu; alpha] = [1; 0]``. The DEQ code
    uses ``s = 1``; here ``s`` is the mean of ``diag(G G^T)`` (per sample), so
    the regulariser keeps the same relative strength as residuals shrink. A
    row whose system cannot be solved (singular, non-finite) takes a plain step
    ``z <- f(z)`` instead. As in :func:`fixed_point_iteration`, each row stops
    on its own residual (then is frozen), so a row's result does not depend on
    the other rows; and if ``f`` has a ``restrict(rows)`` method (the same map
    on those rows of the batch only), stopped rows are soon no longer
    evaluated, so a batch costs about the work of its rows' own iterations,
    not ``B`` times the slowest row's. Returns ``(z, info)`` like
    :func:`fixed_point_iteration`.
    Options: ``m`` >= 1 (1 is plain iteration), ``lam`` >= 0, ``beta`` in (0, 1].
    """
    max_iter, tol = _check_solver_options(max_iter, tol)
    m = check_number(m, "m", low=1, integer=True)
    lam = check_number(lam, "lam", low=0.0)
    beta = check_number(beta, "beta", low=0.0, low_open=True, high=1.0)
    B = z0.shape[0]
    track = _PerSample(z0, tol)
    g = _WorkingMap(f, z0)
    # History of the working set's last m images F = f(X) and residuals G = F - X (the iterates X = F - G
    # are not stored), in preallocated ring buffers (W, m, n): slot k % m holds evaluation k (0-based), and
    # alpha does not depend on the order of the slots. The Gram matrices G G^T (W, m, m) are kept too and
    # updated by one row per step (O(m n), not O(m^2 n)); the bordered matrix H keeps its border of ones.
    z = z0.reshape(B, -1)
    Fx = z.new_empty((B, m, z.shape[1]))
    G = torch.empty_like(Fx)
    GG = z.new_zeros((B, m, m))
    eye = torch.eye(m, dtype=z.dtype, device=z.device)
    H = z.new_ones((B, m + 1, m + 1))
    H[:, 0, 0] = 0
    rhs = z.new_zeros((B, m + 1, 1))
    rhs[:, 0] = 1

    k = 0
    while k < max_iter:
        W = Fx.shape[0]
        if k == 1:  # first step: plain iteration
            z = Fx[:, 0].clone()
        elif k > 1:
            p = min(k, m)
            gram = GG[:, :p, :p]  # (W, p, p), one Gram matrix per sample
            # lam relative to the mean squared residual, so it does not swamp G G^T once residuals are small
            scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30).view(W, 1, 1)
            # bordered system [[0, 1^T], [1, gram]] [nu; alpha] = [1; 0]: (W, p + 1, p + 1)
            Hp = H[:W, : p + 1, : p + 1]
            Hp[:, 1:, 1:] = gram + lam * scale * eye[:p, :p]
            solution, status = torch.linalg.solve_ex(Hp, rhs[:W, : p + 1])  # never raises: a failed row is flagged
            weights = solution[:, 1:].transpose(1, 2)  # alpha^T: (W, 1, p), sums to one over p
            ok = (status == 0) & torch.isfinite(weights).flatten(1).all(dim=1)
            # z_next = beta alpha^T F + (1 - beta) alpha^T X, with X = F - G: alpha^T F - (1 - beta) alpha^T G
            z = torch.bmm(weights, Fx[:, :p]).squeeze(1)
            if beta != 1.0:
                z = z - (1 - beta) * torch.bmm(weights, G[:, :p]).squeeze(1)
            if not bool(ok.all()):
                z = torch.where(ok.unsqueeze(1), z, Fx[:, (k - 1) % m])
        fz = g(z)
        slot, filled = k % m, min(k + 1, m)
        Fx[:, slot] = fz
        torch.sub(fz, z, out=G[:, slot])
        row = torch.bmm(G[:, :filled], G[:, slot].unsqueeze(2)).squeeze(2)  # (W, filled): <G_j, G_slot>
        GG[:, slot, :filled] = row
        GG[:, :filled, slot] = row
        k += 1
        # relative residual ||G_slot|| / ||f(z)|| per row (as _row_residuals), from the Gram diagonal
        res = row[:, slot].clamp_min(0).sqrt() / (fz.norm(dim=1) + 1e-9)
        track.record(z, res, k)
        if not track.running():
            break
        keep = track.compact()
        if keep is not None:  # a quarter of the rows have stopped: drop them, evaluate the others only
            Fx, G, GG = Fx[keep], G[keep], GG[keep]
            g.set_rows(track.rows)
    return track.info(z0.shape)


def solve_fixed_point(name: str, f, z0, *, max_iter: int, tol: float, **kwargs):
    """Dispatch to :func:`anderson` or :func:`fixed_point_iteration` by name."""
    if name == "anderson":
        return anderson(f, z0, max_iter=max_iter, tol=tol, **kwargs)
    if name == "iteration":
        return fixed_point_iteration(f, z0, max_iter=max_iter, tol=tol)
    raise ValueError(f"unknown solver {name!r}; expected one of {SOLVERS}")


# ---------------------------------------------------------------------------------------------
# the fusion layer f(z; x) of DEQ fusion
# ---------------------------------------------------------------------------------------------


class ResidualBranch(nn.Module):
    """Per-modality branch with injection ``x_i`` (DEQ fusion, Sec. 3.2)::

        z_i <- GN3( ReLU( GN2( W2 ReLU( GN1( W1 z_i ) ) + x_i ) + z_i ) )       (B, d)
    """

    def __init__(self, d: int, groups: int):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, d), nn.Linear(d, d)
        self.gn1, self.gn2, self.gn3 = (nn.GroupNorm(groups, d) for _ in range(3))

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        h = F.relu(self.gn1(self.w1(z)))
        h = self.gn2(self.w2(h) + x)
        return self.gn3(F.relu(h + z))


class PurifyCombine(nn.Module):
    """Fusion branch, "purify then combine" (DEQ fusion, Sec. 3.2)::

        z_fuse <- GN( ReLU( W_f sum_i a_i [ z_fuse * G(z_i' + z_fuse) ] + x_fuse ) )     (B, d)

    ``z_i'`` are this iteration's branch outputs, ``G`` one shared linear
    layer (no sigmoid in the official code), ``a_i`` the presence of modality i
    (1 when present; absent modalities leave the sum, by selection, not by a
    multiplication that would let a NaN through).
    """

    def __init__(self, d: int, groups: int):
        super().__init__()
        self.gate = nn.Linear(d, d)  # G
        self.fuse = nn.Linear(d, d)  # W_f
        self.gn = nn.GroupNorm(groups, d)

    def forward(self, z_fuse: Tensor, branches: list[Tensor], x_fuse: Tensor, present: Tensor) -> Tensor:
        # sum_i a_i [z_fuse * G(z_i' + z_fuse)]: (B, d), term by term (a modality present in every row of the
        # batch needs no selection)
        combined = None
        for i, zi in enumerate(branches):
            purified = z_fuse * self.gate(zi + z_fuse)  # (B, d)
            keep = present[:, i].to(torch.bool)
            if not bool(keep.all()):
                purified = torch.where(keep.unsqueeze(1), purified, torch.zeros((), dtype=purified.dtype,
                                                                                device=purified.device))
            combined = purified if combined is None else combined + purified
        return self.gn(F.relu(self.fuse(combined) + x_fuse))


@register_fusion("deq")
class DEQFusion(Fusion):
    """Deep equilibrium fusion (Ni, Bai, Zhang, Yao, Mei, "Deep Equilibrium
    Multimodal Fusion", 2023, arXiv 2306.16645); survey Sec. IV ([Ni et al., 2023])::

        x_i    = P_i z_i^in                                   (B, d)  injection of modality i, d = out_dim
        x_fuse = sum_i w_i x_i + b                            (B, d)  w_i init 1, b init 0
        z*     = f(z*; x),   z = (z_1, ..., z_M, z_fuse)      (B, (M + 1) d)
                 f: ResidualBranch per modality, PurifyCombine for z_fuse
        h      = z*_fuse                                      (B, out_dim)

    The fixed point is found from ``z = 0`` with a solver (``solver="anderson"``,
    the paper's, or ``"iteration"``, plain ``z <- f(z)``, for teaching) under
    ``torch.no_grad()``: no iteration is stored. Gradients come from the
    implicit function theorem: with ``J = df/dz`` at ``z*``,
    ``dL/dtheta = g^T df/dtheta`` where ``g`` solves the adjoint fixed point
    ``g = J^T g + dL/dz*``. As in the official code, ``f`` is applied once more
    with gradients on (``z_out = f(z*)``) and a backward hook on ``z_out``
    replaces the incoming gradient by ``g``, found with the same solver
    (``J^T g`` by one vector-Jacobian product per step).

    Convergence is per sample (ours; the official code stops on the
    batch-wide residual): each sample iterates until its own relative residual
    is below ``tol`` and is then frozen, so a sample's output does not depend
    on the other samples of the batch (one hard sample neither stops the
    others early nor keeps them iterating); Anderson mixes each sample's own
    history only. The same holds for the adjoint solve. (A sample that does
    not reach ``tol`` within ``max_iter`` is not at a fixed point; where ``f``
    is chaotic, the rounding differences of batched matrix products of other
    sizes can still move its last iterate, e.g. by 1e-2 in float32.)

    ``P_i``: a linear map ``in_dims[i] -> d`` (the paper's modalities already
    share the width d; here they need not). ``d`` must be divisible by
    ``groups`` (GroupNorm, 4 in the paper).

    After each call, :attr:`last_info` holds the forward solve's ``residual``
    (relative, ``||f(z*) - z*|| / ||f(z*)||``, the worst sample's), ``iterations``
    (the slowest sample's), ``trace``, and per sample ``residuals``,
    ``sample_iterations`` and ``converged``,
    and after a backward pass ``backward_residual`` and ``backward_iterations``.
    With ``jacobian_samples > 0`` a training forward also stores
    :attr:`last_jacobian_loss`, the Hutchinson estimate ``||J||_F^2 / n`` of the paper's Jacobian
    regulariser, and :meth:`regularizer` returns it times ``jacobian_weight`` (20, the official code's
    default) for the training loss (:func:`mmlearn.experiments.train_fusion` adds it; with ``fit``, pass
    ``extra_losses=[lambda model, out, batch: model.fusion.regularizer()]``). The penalty keeps ``f`` a
    contraction, so solves need fewer steps (in the playground: 5.4 instead of 9.9 on average, all but 0.2 %
    of rows converged instead of 78 %, at the same accuracy with weight 1; weight 20 cost 7 points there).

    Initialisation (our choice, not the paper's): the official code keeps
    PyTorch's default init, at which ``f`` is often far from a contraction at
    the small widths used here (the quadratic purify term makes the fusion
    branch chaotic; the relative residual stalls near 0.1-0.5). Scaling the
    last linear layer of each branch (``W2`` and ``W_f``) by ``init_scale``
    (0.1; 1 restores the default), in the spirit of Fixup/ReZero inits,
    starts ``f`` near a contraction, so 10-20 solver steps reach residuals
    of 1e-3 to 1e-5 at width 32-64.

    GroupNorm groups: the paper uses 4 (at widths in the hundreds). A group of
    2-4 channels makes GroupNorm nearly a sign function (2 channels normalise
    to exactly +-1: no gradient reaches the layers before it), so by default
    (``groups=None``) this module takes 4 groups only if each keeps at least 8
    channels, else 2, else 1.

    Missing-aware: an absent modality leaves both the fusion sum and ``x_fuse``.
    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    Options (numbers checked with ``check_number``: NaN/inf and out-of-range values are a ``ValueError``):
    ``solver`` ("anderson"), ``max_iter`` (30, >= 1), ``tol`` (1e-3, > 0),
    ``backward_max_iter`` (max_iter + 1), ``backward_tol`` (tol), ``groups`` (None: 4, 2 or 1),
    ``anderson_m`` (6), ``jacobian_samples`` (0), ``init_scale`` (0.1), ``jacobian_weight`` (20).
    """

    handles_missing = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        solver: str = "anderson",
        max_iter: int = 30,
        tol: float = 1e-3,
        backward_max_iter: int | None = None,
        backward_tol: float | None = None,
        groups: int | None = None,
        anderson_m: int = 6,
        jacobian_samples: int = 0,
        init_scale: float = 0.1,
        jacobian_weight: float = 20.0,
    ):
        super().__init__(in_dims, out_dim)
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; expected one of {SOLVERS}")
        if groups is None:
            # the paper's 4 groups, fewer when a group would get under 8 channels (see docstring)
            groups = next(g for g in (4, 2, 1) if out_dim % g == 0 and out_dim // g >= 8 or g == 1)
        groups = check_number(groups, "groups", low=1, integer=True)
        if out_dim % groups != 0:
            raise ValueError(f"DEQFusion: out_dim ({out_dim}) must be divisible by groups ({groups}) for GroupNorm")
        self.solver = solver
        self.max_iter = check_number(max_iter, "max_iter", low=1, integer=True)
        self.tol = check_number(tol, "tol", low=0.0, low_open=True)
        self.backward_max_iter = (
            check_number(backward_max_iter, "backward_max_iter", low=1, integer=True)
            if backward_max_iter is not None
            else self.max_iter + 1
        )
        self.backward_tol = (
            check_number(backward_tol, "backward_tol", low=0.0, low_open=True) if backward_tol is not None else self.tol
        )
        self.anderson_m = check_number(anderson_m, "anderson_m", low=1, integer=True)
        self.jacobian_samples = check_number(jacobian_samples, "jacobian_samples", low=0, integer=True)
        self.jacobian_weight = check_number(jacobian_weight, "jacobian_weight", low=0.0)
        init_scale = check_number(init_scale, "init_scale", low=0.0)
        d = out_dim
        # P_i: project every modality to the common width d
        self.inject = nn.ModuleDict({m: nn.Linear(k, d) for m, k in self.in_dims.items()})
        # the per-modality branches and the fusion branch of f
        self.branches = nn.ModuleDict({m: ResidualBranch(d, groups) for m in self.in_dims})
        self.fusion_branch = PurifyCombine(d, groups)
        # start near a contraction: the last linear layer of every branch scaled down (see docstring)
        with torch.no_grad():
            for branch in self.branches.values():
                branch.w2.weight.mul_(init_scale)
            self.fusion_branch.fuse.weight.mul_(init_scale)
        # w_i (init 1) and b (init 0) of x_fuse = sum_i w_i x_i + b
        self.weights = nn.Parameter(torch.ones(len(self.in_dims)))
        self.bias = nn.Parameter(torch.zeros(1))
        self.last_info: dict = {}
        self.last_jacobian_loss: Tensor | None = None

    def _solver_kwargs(self) -> dict:
        return {"m": self.anderson_m} if self.solver == "anderson" else {}

    def iteration_map(
        self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> Callable[[Tensor], Tensor]:
        """The map ``z -> f(z; x)`` on flat states ``(B, (M + 1) d)`` for these inputs.

        Exposed so that a reader (or a test) can iterate or unroll it by hand. ``f.restrict(rows)`` is the same
        map for those rows of the batch only (``rows``: indices), which the solvers use to stop evaluating the
        rows that have converged.
        """
        x, mask = self.check(features, present)
        names, d = self.modalities, self.out_dim
        a = torch.stack([mask[m] for m in names], dim=1)  # (B, M) bool
        xs = [self.inject[m](x[m]) for m in names]  # x_i: (B, d) each
        # x_fuse = sum_i a_i w_i x_i + b: (B, d); absent modalities left out by selection
        x_fuse = sum(
            torch.where(a[:, i : i + 1], self.weights[i] * xs[i], torch.zeros_like(xs[i])) for i in range(len(names))
        ) + self.bias

        def map_for(xs: list[Tensor], x_fuse: Tensor, a: Tensor) -> Callable[[Tensor], Tensor]:
            def f(z: Tensor) -> Tensor:
                parts = z.split(d, dim=1)  # (z_1, ..., z_M, z_fuse), each (B, d)
                branches = [self.branches[m](parts[i], xs[i]) for i, m in enumerate(names)]
                z_fuse = self.fusion_branch(parts[-1], branches, x_fuse, a)
                return torch.cat([*branches, z_fuse], dim=1)

            return f

        f = map_for(xs, x_fuse, a)
        # the same map for some rows of the batch only: the solvers stop evaluating rows that have converged
        f.restrict = lambda rows: map_for([x[rows] for x in xs], x_fuse[rows], a[rows])
        return f

    def _start(self, B: int, z0: Tensor | None) -> Tensor:
        """The solver's first iterate: ``z0`` if given, else the last solution under :func:`solver_warm_start`
        (same batch size, no grad), else zeros."""
        n = (len(self.in_dims) + 1) * self.out_dim
        if z0 is None and _WARM_START and not torch.is_grad_enabled():
            prev = getattr(self, "_warm_z", None)
            if prev is not None and prev.shape == (B, n):
                z0 = prev
        if z0 is None:
            return torch.zeros(B, n, device=self.bias.device, dtype=self.bias.dtype)
        if tuple(z0.shape) != (B, n):
            raise ValueError(f"DEQFusion: z0 must have shape {(B, n)} (batch, (modalities + 1) * out_dim), "
                             f"got {tuple(z0.shape)}")
        return z0.detach().to(device=self.bias.device, dtype=self.bias.dtype)

    def _remember(self, z_star: Tensor) -> None:
        if _WARM_START and not torch.is_grad_enabled():
            self._warm_z = z_star.detach()
            _WARM_MODULES.add(self)
        else:
            self._warm_z = None

    def fixed_point(self, features, present=None, z0: Tensor | None = None) -> tuple[Tensor, dict]:
        """Solve ``z* = f(z*; x)`` without building a graph: ``(z* (B, (M+1) d), info)``.

        The solve starts from ``z0`` (B, (M+1) d) when given (e.g. the fixed point of a nearby input), else
        from zero (or, under :func:`solver_warm_start`, from the previous solve's solution). The start changes
        the number of iterations, not the answer: each row converges to its own fixed point (within ``tol``)."""
        f = self.iteration_map(features, present)
        B = next(iter(features.values())).shape[0]
        z0 = self._start(B, z0)
        with torch.no_grad():
            z_star, info = solve_fixed_point(self.solver, f, z0, max_iter=self.max_iter, tol=self.tol,
                                             **self._solver_kwargs())
        self._remember(z_star)
        return z_star, info

    def forward(self, features, present=None, z0: Tensor | None = None) -> Tensor:
        f = self.iteration_map(features, present)
        B = next(iter(features.values())).shape[0]
        z0 = self._start(B, z0)
        # forward solve: no graph, nothing stored
        with torch.no_grad():
            z_star, info = solve_fixed_point(
                self.solver, f, z0, max_iter=self.max_iter, tol=self.tol, **self._solver_kwargs()
            )
        self._remember(z_star)
        self.last_info = dict(info)
        self.last_jacobian_loss = None
        if not torch.is_grad_enabled():
            return f(z_star)[:, -self.out_dim :]
        # one differentiable application at the fixed point: z_out = f(z*), graph to theta and x only
        z_star = z_star.detach().requires_grad_()
        z_out = f(z_star)
        if self.training and self.jacobian_samples > 0:
            self.last_jacobian_loss = self._jacobian_estimate(z_out, z_star)
        if z_out.requires_grad:
            self._register_implicit_hook(z_out, z_star)
        return z_out[:, -self.out_dim :]

    def _register_implicit_hook(self, z_out: Tensor, z_star: Tensor) -> None:
        busy = [False]
        info = self.last_info

        def implicit_gradient(grad: Tensor) -> Tensor:
            if busy[0]:  # the vector-Jacobian products below pass through this hook: leave them alone
                return grad
            busy[0] = True
            try:
                # adjoint fixed point g = J^T g + grad, J = df/dz at z*
                def adjoint(g: Tensor) -> Tensor:
                    return torch.autograd.grad(z_out, z_star, g, retain_graph=True)[0] + grad

                g, binfo = solve_fixed_point(
                    self.solver, adjoint, torch.zeros_like(grad), max_iter=self.backward_max_iter,
                    tol=self.backward_tol, **self._solver_kwargs(),
                )
            finally:
                busy[0] = False
            info["backward_residual"] = binfo["residual"]
            info["backward_iterations"] = binfo["iterations"]
            return g

        z_out.register_hook(implicit_gradient)

    def _jacobian_estimate(self, z_out: Tensor, z_star: Tensor) -> Tensor:
        """Hutchinson estimate of ``||J||_F^2 / n`` at ``z*`` (the paper's Jacobian regulariser), differentiable."""
        total = z_out.new_zeros(())
        for _ in range(self.jacobian_samples):
            v = torch.randn_like(z_out)
            vj = torch.autograd.grad(z_out, z_star, v, retain_graph=True, create_graph=True)[0]
            total = total + vj.pow(2).sum() / v.numel()
        return total / self.jacobian_samples

    def regularizer(self) -> Tensor | None:
        """The Jacobian penalty ``jacobian_weight * ||J||_F^2 / n`` of the last training forward pass (``None``
        when ``jacobian_samples`` is 0, before any training forward, or in eval mode)."""
        if not self.training or self.last_jacobian_loss is None:
            return None
        return self.jacobian_weight * self.last_jacobian_loss

    @property
    def last_residual(self) -> float | None:
        return self.last_info.get("residual")

    @property
    def last_iterations(self) -> int | None:
        return self.last_info.get("iterations")
