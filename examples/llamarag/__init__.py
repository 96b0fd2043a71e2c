"""A retrieval-augmented workflow over llama-index-core types, run distributed.

``examples.llamarag.workflow.RagWorkflow`` is the workflow (a llama-index-workflows program with
its imports changed), ``examples.llamarag.documents`` loads the bundled corpus, and
``python -m examples.llamarag`` runs it over NATS with two worker processes.
"""
