"""The example's corpus: a few short text files on unrelated topics, read with llama-index's
``SimpleDirectoryReader`` into one ``Document`` per file."""

from __future__ import annotations

from pathlib import Path

from llama_index.core import Document, SimpleDirectoryReader

__all__ = ["CORPUS", "load_documents"]

CORPUS = Path(__file__).resolve().parent / "corpus"


def load_documents(directory: str | Path = CORPUS) -> list[Document]:
    """One ``Document`` per ``*.txt`` file of ``directory`` (default: the bundled corpus), sorted
    by file name, whose id is the file name and whose only metadata is ``file_name`` (the reader
    would add paths, sizes and dates, which differ between machines).

    Raises:
        ValueError: the directory does not exist or holds no ``*.txt`` file.
    """
    reader = SimpleDirectoryReader(
        input_dir=str(directory),
        required_exts=[".txt"],
        file_metadata=lambda path: {"file_name": Path(path).name},
    )
    docs = sorted(reader.load_data(), key=lambda d: d.metadata["file_name"])
    for doc in docs:
        doc.id_ = doc.metadata["file_name"]
    return docs
