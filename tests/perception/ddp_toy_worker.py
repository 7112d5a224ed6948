"""Run by test_distributed_torchrun.py, alone or under torchrun: the shared loop's toy task (no random
augmentation, no batch norm), so that the weights depend only on which frames each step sees.

    python ddp_toy_worker.py OUT_DIR BATCH_SIZE EPOCHS [resume]
"""

from __future__ import annotations

import sys
from pathlib import Path

from test_training import ToyData, ToyTask  # this folder is sys.path[0] when run as a script

from perception.training import TrainConfig, fit


class PlainToyTask(ToyTask):
    def augment(self, batch, generator):
        return self.prepare(batch)


if __name__ == "__main__":
    out, batch, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    config = TrainConfig(out_dir=out, epochs=epochs, batch_size=batch, lr=2e-2, device="cpu", progress=False,
                         warmup_epochs=0.5, threads=1, resume="resume" in sys.argv[4:])
    fit(PlainToyTask(), ToyData(96, 0), ToyData(16, 1), config)
