"""Lightning strategy="ddp" on 2 CPU processes (Lightning's own launcher re-runs this script).

Environment: LOG_ALL_RANKS, FAIL_RANK (a rank that raises in its second epoch), CHECKPOINT (a
folder for a ModelCheckpoint); with system metrics on, rank 0 waits for its first sample
before the training ends.
"""

import os

import autolog

autolog.autolog(log_all_ranks=os.environ.get("LOG_ALL_RANKS") == "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


class Regression(L.LightningModule):
    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        if os.environ.get("FAIL_RANK") == str(self.global_rank) and self.current_epoch == 1:
            raise RuntimeError(f"rank {self.global_rank} failed in epoch 1")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def on_train_end(self):
        if self.global_rank == 0 and os.environ.get("AUTOLOG_LOG_SYSTEM_METRICS") == "true":
            from autolog.provenance.capture import sampler

            sampler().wait_for_samples(autolog.active_run().run_id, 1, 120)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(64, 4), torch.randn(64, 1)), batch_size=16)
checkpoints = [L.pytorch.callbacks.ModelCheckpoint(dirpath=os.environ["CHECKPOINT"], save_top_k=-1)]
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                    enable_progress_bar=False, enable_model_summary=False, callbacks=checkpoints)
trainer.fit(Regression(), data)
print("trained", trainer.global_rank, flush=True)
