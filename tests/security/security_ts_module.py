"""A TorchScript module for the corpus (TorchScript compiles from source, so it needs a file).

Its forward writes a file and maps another one: the file operations ``modelport scan`` reports
in a TorchScript archive's code. The corpus only scripts and saves it; nothing ever runs it.
"""

from __future__ import annotations

import torch


class FileWriter(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.path)
        return x + torch.from_file(self.path, size=1, dtype=torch.uint8).float()
