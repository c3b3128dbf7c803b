"""Progress of a long run: a live bar on a terminal, one line per validation otherwise (logs)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from replication.config import ExperimentConfig
    from replication.history import History


class Progress:
    def __init__(self, config: ExperimentConfig, start: int, enabled: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.label = f"{config.model.method}/{config.data.name}/seed {config.seed}"
        self.total = config.train.iterations
        self.bar = tqdm(
            total=self.total,
            initial=start,
            desc=self.label,
            disable=not self.interactive,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def step(self, step: dict) -> None:
        """Advance by one iteration, showing its loss and NFE."""
        if self.interactive:
            fields = {"loss": f"{step['loss']:.3f}"}
            if step["nfe_forward"]:
                fields["nfe"] = f"{step['nfe_forward']}/{step['nfe_backward']}"
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update()

    def validated(self, history: History) -> None:
        """Report a validation; in logs this is the only line per interval."""
        point = history.val_curve[-1]
        text = (
            f"val {point['val_nll']:.4f} (best {history.best_val:.4f} @ {history.best_iteration})"
        )
        if point["nfe_forward"]:
            text += f", nfe {point['nfe_forward']:.0f}/{point['nfe_backward']:.0f}"
        if self.interactive:
            self.bar.write(f"{self.label} iter {history.iteration}: {text}", file=sys.stderr)
        else:
            print(
                f"{self.label} iter {history.iteration}/{self.total}: {text}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()
