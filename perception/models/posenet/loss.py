"""PoseNet's loss: anchor cross-entropy plus the negative log-likelihoods of the true offset (2-D
Gaussian) and heading (von Mises), with per-image learned variances (see `network`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perception.models.posenet.network import OFFSET_ANCHORS, SOFT_LABEL_SIGMA, decode


def _gaussian_nll(r: torch.Tensor, pos_log_var: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """NLL (without log 2pi) of residuals r [B, M, 2] under N(0, S) with S from log-variances [B, 2] and
    correlation [B]: Q/2 + log(sigma_e sigma_n sqrt(1 - rho^2)). Returns [B, M]."""
    z = r / (0.5 * pos_log_var).exp()[:, None, :]
    rho = corr[:, None]
    one_m_rho2 = 1.0 - rho * rho
    q = (z[..., 0] ** 2 - 2.0 * rho * z[..., 0] * z[..., 1] + z[..., 1] ** 2) / one_m_rho2
    return 0.5 * q + 0.5 * pos_log_var.sum(1, keepdim=True) + 0.5 * torch.log(one_m_rho2)


def pose_nll(raw: torch.Tensor, position: torch.Tensor, heading_rad: torch.Tensor, heading_valid: torch.Tensor,
             anchors: torch.Tensor, offset_scale: torch.Tensor | float, *,
             beta: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """The PoseNet loss: anchor cross-entropy + negative log-likelihoods of the true offset and heading.

    Args:
        raw: float [B, NUM_FIXED + 3K], the network's output; anchors [K, 2], offset_scale: the model's.
        position: float [B, 2], true (east, north), normalized.
        heading_rad: float [B], true heading; heading_valid: bool [B] (False: not known, no heading loss).
        beta: beta-NLL (Seitzer et al., ICLR 2022): each sample's NLL is weighted by its predicted
            variance^beta (not differentiated), so hard samples are not simply written off with a large
            variance while the mean stops learning; 0 is the plain NLL.

    Returns: (loss, figures: cross-entropy, offset NLL, heading NLL, top-anchor accuracy, position error).
    """
    d = decode(raw, anchors, offset_scale)
    k = anchors.shape[0]
    anchors = anchors.to(raw.device, torch.float32)
    scale = float(offset_scale)
    dist2 = ((position.float()[:, None, :] - anchors[None]) ** 2).sum(2)  # [B, K]
    # soft labels: the anchors around the truth all count, by distance (neighbours along a street are
    # nearly as right as the nearest, and a hard label would teach arbitrary boundaries)
    soft = torch.softmax(-dist2 / (2.0 * (SOFT_LABEL_SIGMA * scale) ** 2), dim=1)
    ce = -(soft * F.log_softmax(d.logits, dim=1)).sum(1)
    m = min(OFFSET_ANCHORS, k)
    near = dist2.topk(m, dim=1, largest=False).indices  # [B, M]
    w_near = soft.gather(1, near)
    w_near = w_near / w_near.sum(1, keepdim=True).clamp_min(1e-12)
    cand = d.candidates.gather(1, near[..., None].expand(-1, -1, 2))  # [B, M, 2]
    nll_off = (_gaussian_nll(position.float()[:, None, :] - cand, d.pos_log_var, d.corr) * w_near).sum(1)
    # von Mises with concentration kappa = 1/var: NLL = kappa (1 - cos d) + log I0e(kappa) (+ log 2pi)
    kappa = (-d.heading_log_var).exp()
    truth_vec = torch.stack([torch.sin(heading_rad), torch.cos(heading_rad)], 1).float()
    cos_d = (d.heading_vec * truth_vec).sum(1)
    nll_head = kappa * (1.0 - cos_d) + torch.log(torch.special.i0e(kappa))
    if beta > 0:
        w_pos = (0.5 * beta * d.pos_log_var.detach().sum(1)).exp()
        w_head = (0.5 * beta * d.heading_log_var.detach()).exp()
        w_pos = w_pos / w_pos.mean()  # a relative weighting: the loss scale (and so the lr) stays put
        w_head = w_head / w_head.mean()
    else:
        w_pos = w_head = torch.ones_like(nll_off)
    valid = heading_valid.float()
    n_valid = valid.sum().clamp_min(1.0)
    # keep the (sin, cos) vector near unit length: its angle is what counts, a drifting norm slows it
    norm_penalty = ((d.heading_norm - 1.0) ** 2).mean()
    loss = ce.mean() + (w_pos * nll_off).mean() + (w_head * nll_head * valid).sum() / n_valid + 0.01 * norm_penalty
    figures = {"ce": float(ce.detach().mean()), "nll_pos": float(nll_off.detach().mean()),
               "nll_head": float((nll_head.detach() * valid).sum() / n_valid),
               "top1": float((d.best == near[:, 0]).float().mean()),
               "err": float((position.float() - d.position).detach().norm(dim=1).mean())}
    return loss, figures

