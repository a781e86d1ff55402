"""Statistics for comparisons: paired bootstrap intervals, Wilson intervals, Bradley-Terry strengths.

>>> lo, hi = wilson(8, 10)
>>> round(lo, 3), round(hi, 3)
(0.49, 0.943)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Delta:
    """B - A with its paired-bootstrap 95% interval, and each side's bootstrap mean and half-width."""

    a: float
    b: float
    delta: float
    lo: float
    hi: float
    p_value: float  # sacreBLEU's paired-bootstrap p-value for "no difference"
    n: int
    b_mean: float = float("nan")
    b_ci: float = float("nan")  # half-width of B's 95% interval, as sacrebleu --paired-bs reports it

    def as_dict(self) -> dict:
        return asdict(self)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` rows of ``n`` indices drawn with replacement (one row per bootstrap resample)."""
    return np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)


def _half_width(values: np.ndarray) -> tuple[float, float]:
    # sacreBLEU's estimate_ci: the 1/40 order statistics from each end
    v = np.sort(values)
    lower = len(v) // 40
    return float(v.mean()), float(0.5 * (v[len(v) - lower - 1] - v[lower]))


def _delta(a: float, b: float, sa: np.ndarray, sb: np.ndarray, n: int) -> Delta:
    d = sb - sa
    lo, hi = np.percentile(d, [2.5, 97.5])
    # p-value as sacreBLEU computes it: how often a centred resampled |difference| exceeds the real one
    absd = np.abs(d)
    p = (np.sum(absd - absd.mean() > abs(b - a)) + 1) / (len(d) + 1)
    b_mean, b_ci = _half_width(sb)
    return Delta(a, b, b - a, float(lo), float(hi), float(p), n, b_mean, b_ci)


def paired_bootstrap(a: list[float], b: list[float], resamples: int = 1000, seed: int = 0) -> Delta:
    """Paired bootstrap of the difference of means ``mean(b) - mean(a)`` over items (NaN items dropped).

    >>> d = paired_bootstrap([1.0] * 20, [2.0] * 20)
    >>> d.delta, d.lo, d.hi, d.n
    (1.0, 1.0, 1.0, 20)
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    if len(xa) == 0:
        nan = float("nan")
        return Delta(nan, nan, nan, nan, nan, nan, 0)
    idx = resample_indices(len(xa), resamples, seed)
    return _delta(float(xa.mean()), float(xb.mean()), xa[idx].mean(1), xb[idx].mean(1), len(xa))


def corpus_paired_bootstrap(stats_a: np.ndarray, stats_b: np.ndarray, score: Callable[[np.ndarray], float],
                            resamples: int = 1000, seed: int = 0) -> Delta:
    """Paired bootstrap of a corpus score (BLEU, chrF) rescored from summed per-sentence statistics.

    Args:
        stats_a, stats_b: per-item sufficient statistics, one row per item, same item order.
        score: summed statistics -> corpus score.
    """
    idx = resample_indices(len(stats_a), resamples, seed)
    sa = np.array([score(stats_a[row].sum(0)) for row in idx])
    sb = np.array([score(stats_b[row].sum(0)) for row in idx])
    return _delta(score(stats_a.sum(0)), score(stats_b.sum(0)), sa, sb, len(stats_a))


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (0, 1) when ``n`` is 0.

    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _fit_bt(wins: np.ndarray, iterations: int = 50, tol: float = 1e-9) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry likelihood of a wins matrix (``wins[i, j]``: i's wins
    over j), by Newton's method: a handful of steps for the few versions an A/B test compares."""
    games = wins + wins.T
    theta = np.zeros(len(wins))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # p[i, j]: chance that i beats j
        grad = wins.sum(1) - (games * p).sum(1)
        w = games * p * (1 - p)
        hess = w - np.diag(w.sum(1))
        step = np.linalg.pinv(hess) @ grad  # pinv: the likelihood ignores a common shift of all strengths
        theta = theta - step
        theta -= theta.mean()
        if np.abs(step).max() < tol:
            break
    return theta


def _wins(k: int, pi: np.ndarray, pj: np.ndarray, s: np.ndarray, prior: float) -> np.ndarray:
    wins = np.full((k, k), prior / 2)
    np.fill_diagonal(wins, 0.0)
    np.add.at(wins, (pi, pj), s)
    np.add.at(wins, (pj, pi), 1.0 - s)
    return wins


def _encode(comparisons, names):
    pos = {n: x for x, n in enumerate(names)}
    return (np.array([pos[i] for i, _, _ in comparisons], dtype=int),
            np.array([pos[j] for _, j, _ in comparisons], dtype=int),
            np.array([float(v) for _, _, v in comparisons]))


def bradley_terry(comparisons: list[tuple[str, str, float]], players: list[str] | None = None,
                  prior: float = 0.5) -> dict[str, float]:
    """Bradley-Terry strengths (log scale, mean 0) from ``(i, j, s)``: ``s`` = 1 if i beat j, 0.5 a tie, 0 a loss.

    Fitted with Hunter's MM algorithm; ``prior`` adds that many virtual ties between every pair so that
    an unbeaten player keeps a finite strength.

    >>> s = bradley_terry([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)])
    >>> round(s["a"] - s["b"], 2)  # wins 3 + 0.25 against 1 + 0.25 (half a virtual tie each): ln(3.25 / 1.25)
    0.96
    """
    names = sorted(set(players or []) | {p for i, j, _ in comparisons for p in (i, j)})
    if not names:
        return {}
    pi, pj, s = _encode(comparisons, names)
    strengths = _fit_bt(_wins(len(names), pi, pj, s, prior))
    return {n: float(strengths[x]) for x, n in enumerate(names)}


def bradley_terry_intervals(comparisons: list[tuple[str, str, float]], resamples: int = 1000,
                            seed: int = 0, prior: float = 0.5) -> dict[str, tuple[float, float, float]]:
    """Each player's strength with a 95% bootstrap interval over comparisons: ``{name: (s, lo, hi)}``."""
    if not comparisons:
        return {}
    names = sorted({p for i, j, _ in comparisons for p in (i, j)})
    point = bradley_terry(comparisons, names, prior)
    pi, pj, s = _encode(comparisons, names)
    idx = resample_indices(len(comparisons), resamples, seed)
    draws = np.array([_fit_bt(_wins(len(names), pi[row], pj[row], s[row], prior)) for row in idx])
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    return {n: (point[n], float(lo[x]), float(hi[x])) for x, n in enumerate(names)}
