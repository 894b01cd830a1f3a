"""Gaussian mixtures of noisy points ("extreme deconvolution"), fitted by EM in numpy, with BIC model selection.

Every point i comes with its own measurement covariance S_i (here the estimates' variances). Component k has weight
a_k, mean m_k and an intrinsic covariance V_k; point i is drawn from N(m_k, V_k + S_i). EM (Bovy, Hogg & Roweis
2011, Ann. Appl. Stat. 5:1657, "Extreme deconvolution") alternates

    E: q_ik ∝ a_k N(w_i | m_k, T_ik), T_ik = V_k + S_i;  b_ik = m_k + V_k T_ik^-1 (w_i - m_k);
       B_ik = V_k - V_k T_ik^-1 V_k
    M: a_k = mean_i q_ik;  m_k = sum_i q_ik b_ik / sum_i q_ik;
       V_k = sum_i q_ik [(m_k - b_ik)(m_k - b_ik)^T + B_ik] / sum_i q_ik + r I

so precise points shape the components and imprecise ones barely move them. With S_i = 0 this is the ordinary EM
of a Gaussian mixture. ``r`` (``reg_covar``) keeps V_k positive definite when a component holds a few (nearly)
identical points. Initialisation is k-means++ (Arthur & Vassilvitskii 2007) with a seeded generator followed by a
few Lloyd iterations, restarted ``n_init`` times; the best final log-likelihood wins, so results depend only on the
seed. Cost: O(iterations x n x K x d^3) with d = 3 here, milliseconds for hundreds of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COVARIANCE_TYPES = ("full", "diag")


@dataclass
class MixtureFit:
    """A fitted mixture: weights (K,), means (K, d), covariances (K, d, d) (intrinsic, without measurement noise)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    log_likelihood: float
    n_iterations: int
    converged: bool
    covariance_type: str

    @property
    def n_components(self) -> int:
        return int(self.weights.size)

    def n_parameters(self) -> int:
        k, d = self.means.shape
        per_covariance = d * (d + 1) // 2 if self.covariance_type == "full" else d
        return (k - 1) + k * d + k * per_covariance

    def bic(self, n_points: int) -> float:
        """Bayesian information criterion, -2 log L + n_parameters ln n (lower is better)."""
        return -2.0 * self.log_likelihood + self.n_parameters() * np.log(n_points)

    def responsibilities(self, points: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(n, K) posterior probability of each component for each point (with its measurement covariance)."""
        log_q = _component_log_densities(points, noise, self.weights, self.means, self.covariances)
        return np.exp(log_q - _logsumexp(log_q)[:, None])


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = np.max(values, axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.sum(np.exp(values - top[:, None]), axis=1))


def _component_log_densities(points, noise, weights, means, covariances) -> np.ndarray:
    n, d = points.shape
    out = np.empty((n, weights.size))
    for k in range(weights.size):
        total = covariances[k][None] + noise  # (n, d, d)
        sign, log_det = np.linalg.slogdet(total)
        residual = points - means[k]
        solved = np.linalg.solve(total, residual[..., None])[..., 0]
        mahalanobis = np.einsum("nd,nd->n", residual, solved)
        out[:, k] = np.log(max(weights[k], 1e-300)) - 0.5 * (d * np.log(2 * np.pi) + log_det + mahalanobis)
        out[sign <= 0, k] = -np.inf
    return out


def _kmeans_plus_plus(points: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    centers = [points[rng.integers(points.shape[0])]]
    for _ in range(1, n_components):
        distance = np.min([np.sum((points - c) ** 2, axis=1) for c in centers], axis=0)
        total = distance.sum()
        index = rng.integers(points.shape[0]) if total <= 0 else rng.choice(points.shape[0], p=distance / total)
        centers.append(points[index])
    centers = np.array(centers)
    for _ in range(10):  # a few Lloyd iterations
        assignment = np.argmin(((points[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        for k in range(n_components):
            if np.any(assignment == k):
                centers[k] = points[assignment == k].mean(0)
    return centers


def _initial_parameters(points, n_components, rng, reg_covar):
    n, d = points.shape
    centers = _kmeans_plus_plus(points, n_components, rng)
    assignment = np.argmin(((points[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    spread = np.cov(points.T, bias=True).reshape(d, d) if n > 1 else np.eye(d)
    weights = np.empty(n_components)
    covariances = np.empty((n_components, d, d))
    for k in range(n_components):
        members = points[assignment == k]
        weights[k] = max(len(members), 1) / n
        covariances[k] = np.cov(members.T, bias=True).reshape(d, d) if len(members) > 1 else spread.copy()
        covariances[k] += reg_covar * np.eye(d)
    return weights / weights.sum(), centers.copy(), covariances


def _em(points, noise, weights, means, covariances, covariance_type, reg_covar, max_iter, tol):
    n, d = points.shape
    eye = np.eye(d)
    previous = -np.inf
    log_likelihood = -np.inf
    converged = False
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        log_q = _component_log_densities(points, noise, weights, means, covariances)
        norm = _logsumexp(log_q)
        log_likelihood = float(norm.sum())
        q = np.exp(log_q - norm[:, None])
        if abs(log_likelihood - previous) <= tol * max(1.0, abs(log_likelihood)):
            converged = True
            break
        previous = log_likelihood
        for k in range(weights.size):
            q_k = q[:, k]
            mass = q_k.sum()
            weights[k] = mass / n
            if mass < 1e-10:  # an empty component keeps its place but carries no weight
                continue
            total = covariances[k][None] + noise
            gain = covariances[k][None] @ np.linalg.inv(total)  # V T^-1, (n, d, d)
            b = means[k] + np.einsum("nij,nj->ni", gain, points - means[k])
            big_b = covariances[k][None] - gain @ covariances[k][None]
            means[k] = (q_k[:, None] * b).sum(0) / mass
            residual = b - means[k]
            scatter = np.einsum("n,ni,nj->ij", q_k, residual, residual) + np.einsum("n,nij->ij", q_k, big_b)
            covariance = scatter / mass + reg_covar * eye
            covariances[k] = np.diag(np.diag(covariance)) if covariance_type == "diag" else covariance
        weights /= weights.sum()
    return MixtureFit(weights, means, covariances, log_likelihood, iteration, converged, covariance_type)


def _em_diagonal(points, noise_variances, weights, means, variances, reg_covar, max_iter, tol):
    """The same EM when both the components and the measurement noise are diagonal: element-wise, no solves."""
    n, d = points.shape
    previous = -np.inf
    log_likelihood = -np.inf
    converged = False
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        total = variances[None] + noise_variances[:, None]  # (n, K, d)
        residual = points[:, None] - means[None]
        log_q = np.log(np.maximum(weights, 1e-300))[None] - 0.5 * np.sum(
            np.log(2 * np.pi * total) + residual**2 / total, axis=2
        )
        norm = _logsumexp(log_q)
        log_likelihood = float(norm.sum())
        q = np.exp(log_q - norm[:, None])
        if abs(log_likelihood - previous) <= tol * max(1.0, abs(log_likelihood)):
            converged = True
            break
        previous = log_likelihood
        mass = q.sum(0)
        gain = variances[None] / total
        b = means[None] + gain * residual
        big_b = variances[None] * (1.0 - gain)
        filled = mass > 1e-10  # an empty component keeps its place but carries no weight
        safe = np.where(filled, mass, 1.0)[:, None]
        new_means = np.einsum("nk,nkd->kd", q, b) / safe
        spread = np.einsum("nk,nkd->kd", q, (b - new_means[None]) ** 2 + big_b) / safe + reg_covar
        means = np.where(filled[:, None], new_means, means)
        variances = np.where(filled[:, None], spread, variances)
        weights = mass / mass.sum()
    covariances = variances[:, :, None] * np.eye(d)[None]
    return MixtureFit(weights, means, covariances, log_likelihood, iteration, converged, "diag")


def fit_mixture(
    points,
    n_components: int,
    noise=None,
    covariance_type: str = "full",
    reg_covar: float = 1e-3,
    n_init: int = 4,
    max_iter: int = 500,
    tol: float = 1e-7,
    seed: int = 0,
) -> MixtureFit:
    """Fit a Gaussian mixture with per-point measurement covariances (see the module docstring).

    Parameters
    ----------
    points : array_like, shape (n, d)
        Observed points (finite).
    n_components : int
        Number of components K (1 <= K <= n).
    noise : array_like, shape (n, d) or (n, d, d) | None, default: None
        Measurement variances (diagonal) or covariances of every point; None means exact points.
    covariance_type : "full" | "diag", default: "full"
        Intrinsic covariance of each component.
    reg_covar : float, default: 1e-3
        Added to the diagonal of every intrinsic covariance (in the units of ``points``).
    n_init : int, default: 4
        Seeded k-means++ restarts; the highest log-likelihood is kept.
    seed : int, default: 0
        Seed of the initialisations: same seed, same fit.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or not np.isfinite(points).all():
        raise ValueError(f"points must be a finite (n, d) array; got shape {points.shape}")
    n, d = points.shape
    if not 1 <= int(n_components) <= n:
        raise ValueError(f"n_components must be between 1 and the number of points ({n}); got {n_components}")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}")
    if noise is None:
        noise = np.zeros((n, d, d))
    else:
        noise = np.nan_to_num(np.asarray(noise, dtype=float), nan=0.0)
        if noise.shape == (n, d):
            noise = noise[:, :, None] * np.eye(d)[None]
        if noise.shape != (n, d, d):
            raise ValueError(f"noise must have shape ({n}, {d}) or ({n}, {d}, {d}); got {noise.shape}")
    diagonal = covariance_type == "diag" and np.all(noise * (1.0 - np.eye(d))[None] == 0.0)
    best = None
    for child in np.random.SeedSequence(int(seed)).spawn(max(1, int(n_init))):
        rng = np.random.default_rng(child)
        weights, means, covariances = _initial_parameters(points, int(n_components), rng, reg_covar)
        if diagonal:
            variances = np.diagonal(covariances, axis1=1, axis2=2).copy()
            noise_variances = np.diagonal(noise, axis1=1, axis2=2)
            fit = _em_diagonal(points, noise_variances, weights, means, variances, reg_covar, max_iter, tol)
        else:
            if covariance_type == "diag":
                covariances = np.array([np.diag(np.diag(c)) for c in covariances])
            fit = _em(points, noise, weights, means, covariances, covariance_type, reg_covar, max_iter, tol)
        if best is None or fit.log_likelihood > best.log_likelihood + 1e-9:
            best = fit
    return best
