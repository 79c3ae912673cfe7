"""The user's own data brought into a run: chats (OpenAI or ShareGPT format) and documents from
JSONL, Parquet, `datasets.save_to_disk` folders or .txt/.md files, read into `Chat` / `Document`
rows with a report of every row left out and why; and snapshots of the imported files.

Below the stages: nothing here imports a stage, the pipeline or the run store."""

from traitforge.inputs.read import read_chats, read_documents
from traitforge.inputs.report import ImportReport
from traitforge.inputs.snapshot import snapshot, verify
from traitforge.inputs.spec import InputsSpec

__all__ = ["ImportReport", "InputsSpec", "read_chats", "read_documents", "snapshot", "verify"]
