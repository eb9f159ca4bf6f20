"""Per-branch values for Trainer's logs (``main_loss``, ``sub_loss``, optional gradient norms)."""

import torch


class BranchLogs:
    """Running sums since the last log, on device (no host sync per step), averaged like ``loss``."""

    def __init__(self):
        self.names = []
        self.sums = None

    def add(self, accumulation_steps, **values):
        """Add one micro-batch's values (already scaled for accumulation) to the window's sums."""
        device = next(iter(values.values())).device
        values["steps"] = torch.tensor(1.0 / accumulation_steps, device=device)
        stacked = torch.stack([value.float() for value in values.values()])
        if self.sums is None:
            self.names = list(values)
            self.sums = torch.zeros_like(stacked)
        self.sums += stacked

    def pop_means(self, accelerator):
        """The window's means over optimizer steps and processes, and a fresh window; {} if nothing was added."""
        if self.sums is None:
            return {}
        sums = accelerator.gather(self.sums[None]).mean(dim=0).tolist()
        self.sums.zero_()
        *totals, steps = sums
        return {name: total / steps for name, total in zip(self.names, totals)} if steps > 0 else {}


def flat_gradients(parameters):
    """All trainable gradients as one vector (zeros where none yet), for per-branch gradient norms."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().float()
                      for p in parameters if p.requires_grad])
