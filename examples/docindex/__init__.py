"""Docstring index of the standard library: fan-out/fan-in over files into SQLite FTS5.

``python -m examples.docindex`` runs it on NATS with two worker processes (see ``__main__``);
``examples.docindex.workflow.DocIndex`` is the workflow, ``examples.docindex.store`` the database.
"""
