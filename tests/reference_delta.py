"""A slow, literal float64 implementation of DelTA (the DelTA paper's method), kept independent of the
package: explicit squared distances to both centroids (no dot-product identity), boolean
indexing per side, torch's own variance, and a plain loop for the lagged gammas (the assignment
temperatures).

Shared by the core, engine and adapter tests as the reference the fast paths must match.
"""

from __future__ import annotations

import math

import torch


def reference_coefficients(
    v, adv, mask, k_steps=1, lo=0.8, hi=1.2, assignment="soft", contrast="two_sided",
    range_map=True, self_normalise=True, fixed_gamma=None,
):
    v = v.double()
    adv = adv.double()
    pos = mask & (adv > 0)[:, None]
    neg = mask & (adv < 0)[:, None]
    absw = adv.abs()[:, None].expand(mask.shape)

    def centroid(sel, weight):
        total = (weight[sel][:, None] * v[sel]).sum(0)
        return total / max(weight[sel].sum().item(), 1e-8)

    def margin(mu_p, mu_n):
        dist_p = ((v - mu_p) ** 2).sum(-1)
        dist_n = ((v - mu_n) ** 2).sum(-1)
        if contrast == "two_sided":
            d_pos, d_neg = dist_n - dist_p, dist_p - dist_n
        else:
            d_pos, d_neg = -dist_p, -dist_n
        zero = torch.zeros_like(dist_p)
        return torch.where(pos, d_pos, torch.where(neg, d_neg, zero))

    def side_std(d, sel):
        var = d[sel].var(unbiased=False).item() if sel.any() else 0.0
        return math.sqrt(max(var, 1e-8))

    def alpha_of(d, gamma):
        g = torch.where(pos, torch.full_like(d, gamma[0]), torch.full_like(d, gamma[1]))
        a = (d > 0).double() if assignment == "hard" else torch.sigmoid(d / g)
        return torch.where(pos | neg, a, torch.zeros_like(a))

    mu_p, mu_n = centroid(pos, absw), centroid(neg, absw)
    d = margin(mu_p, mu_n)
    gamma = (side_std(d, pos), side_std(d, neg)) if fixed_gamma is None else fixed_gamma
    for _ in range(k_steps):
        alpha = alpha_of(d, gamma)
        mu_p, mu_n = centroid(pos, absw * alpha), centroid(neg, absw * alpha)
        measured = (side_std(d, pos), side_std(d, neg))
        d = margin(mu_p, mu_n)
        if fixed_gamma is None:
            gamma = measured
    alpha = alpha_of(d, gamma)
    a0, a1 = (lo, hi) if range_map else (0.0, 1.0)
    lam = torch.where(pos | neg, a0 + (a1 - a0) * alpha, torch.full_like(alpha, a0))
    lam = torch.where(mask, lam, torch.zeros_like(lam))
    if self_normalise:
        lam = lam * mask.sum().item() / max(lam.sum().item(), 1e-8)
    return lam


