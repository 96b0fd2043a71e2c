"""The example's corpus: a few short text files on unrelated topics, one ``Document`` each."""

from __future__ import annotations

from pathlib import Path

from llama_index.core import Document

__all__ = ["CORPUS", "load_documents"]

CORPUS = Path(__file__).resolve().parent / "corpus"


def load_documents(directory: str | Path = CORPUS) -> list[Document]:
    """One ``Document`` per ``*.txt`` file of ``directory`` (default: the bundled corpus), sorted
    by file name; its id is the file name, and so is its only metadata, ``file_name`` (left out of
    what is embedded, so chunks are found by their content).

    (llama-index's ``SimpleDirectoryReader`` would do as well, but adds paths, sizes and dates,
    which differ between machines, and warns on every file when ``llama-index-readers-file`` is
    not installed.)

    Raises:
        ValueError: ``directory`` holds no ``*.txt`` file (or does not exist).
    """
    files = sorted(Path(directory).glob("*.txt"))
    if not files:
        raise ValueError(f"no *.txt file in {directory}")
    return [
        Document(
            text=f.read_text(encoding="utf-8"),
            id_=f.name,
            metadata={"file_name": f.name},
            excluded_embed_metadata_keys=["file_name"],  # retrieve by content, not by file name
        )
        for f in files
    ]
