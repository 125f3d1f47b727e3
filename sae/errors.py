"""The one exception a bad dictionary may raise.

The pipeline catches `DictionaryError` around decoding and fails only that trace with the message, so every problem
with a dictionary on disk (or a dictionary that does not fit the captured activations) must surface as this type, with
a message that names the format, the file and the tensor a person has to look at.
"""

from __future__ import annotations

from pathlib import Path


class DictionaryError(ValueError):
    """A dictionary folder that cannot be used: missing, malformed, or not matching the activations."""

    def __init__(
        self,
        detail: str,
        *,
        format: str | None = None,
        file: str | Path | None = None,
        tensor: str | None = None,
    ) -> None:
        self.detail = detail
        self.format = format
        self.file = str(file) if file is not None else None
        self.tensor = tensor
        parts = [f"{format} dictionary" if format else "dictionary"]
        if self.file:
            parts.append(self.file)
        where = " ".join(parts)
        what = f"tensor '{tensor}': " if tensor else ""
        super().__init__(f"{where}: {what}{detail}")
