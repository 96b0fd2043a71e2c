"""A retrieval-augmented answer over a handful of documents, written as a llama-index user writes
it: pydantic events carrying llama-index-core types, a typed state, fan-out and fan-in.

The program is a llama-index-workflows program; the only lines that say jetloom are the two
``from engine...`` imports (``from workflows...`` in the original). Shape of a run::

    RagStart(question, documents, top_k)            one Document per file
      ingest   -> DocumentEvent  x N                fan-out: one event per document
      embed    -> ChunksEmbedded x N                split into TextNodes, embed each (4 at a time)
      retrieve -> Retrieved                         fan-in (collect_events), top_k NodeWithScore
      compose  -> Prompt                            ChatMessages: system + context + question
      answer   -> StopEvent(result={...})           the mock LLM's reply and the sources

Nothing here reaches the network: ``HashingEmbedding`` is a local bag-of-words embedding, the LLM
is llama-index's ``MockLLM`` (it answers with the prompt it was given), and the splitter counts
words and cuts sentences with a regular expression instead of llama-index's defaults (a tiktoken
tokenizer, and NLTK's sentence tokenizer, which may try to download its stopword list).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.node_parser.text.utils import split_by_regex
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from pydantic import BaseModel, Field

from engine import Context, Workflow, step
from engine.events import Event, StartEvent, StopEvent

__all__ = [
    "ChunksEmbedded",
    "DocumentEvent",
    "Embedded",
    "HashingEmbedding",
    "Prompt",
    "RagStart",
    "RagState",
    "RagWorkflow",
    "Retrieved",
    "word_splitter",
]

SYSTEM_PROMPT = "Answer the question from the context only. Name the file you used."
_WORD = re.compile(r"[a-z0-9]+")
# words too common to say anything about a topic
_STOP = frozenset(
    "a an and are as at be by can do does for from how in into is it its of on or so that the "
    "their them then they this to what when where which who why with".split()
)


def _terms(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stopwords, a plural ``s`` cut off (``tides`` ->
    ``tide``), so a question and a passage meet on their content words."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class HashingEmbedding(BaseEmbedding):
    """A deterministic local embedding: each content word is hashed (BLAKE2b) into one of
    ``embed_dim`` buckets, counts are L2-normalised, so the cosine of two texts grows with the
    words they share. The same text gives the same vector in every process.

    Args:
        embed_dim: length of the vectors (default 512).
    """

    embed_dim: int = Field(default=512, gt=0, description="length of the vectors")

    @classmethod
    def class_name(cls) -> str:
        return "HashingEmbedding"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.embed_dim
        for term in _terms(text):
            digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest, "big") % self.embed_dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


def word_splitter(chunk_size: int = 80) -> SentenceSplitter:
    """llama-index's ``SentenceSplitter`` with words as tokens and sentences cut by a regular
    expression, so splitting needs no tokenizer or NLTK data. Paragraphs (blank lines) are kept
    whole when they fit in ``chunk_size`` words."""
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=0,
        paragraph_separator="\n\n",
        tokenizer=str.split,
        chunking_tokenizer_fn=split_by_regex(r"[^.!?]+(?:[.!?]+\s*|$)"),
    )


# ---- events ---------------------------------------------------------------------------------


class RagStart(StartEvent):
    """Starts a run: the question, the documents to answer it from, how many chunks to use."""

    question: str = Field(description="what to answer")
    documents: list[Document] = Field(default_factory=list, description="the corpus")
    top_k: int = Field(default=2, ge=1, description="chunks to put in the prompt")


class DocumentEvent(Event):
    """One document of the corpus, to be split and embedded (the fan-out)."""

    document: Document


class ChunksEmbedded(Event):
    """A document's chunks, each with its embedding."""

    source: str
    nodes: list[TextNode]


class Embedded(Event):
    """Streamed once per document: how many chunks it gave."""

    source: str
    chunks: int


class Retrieved(Event):
    """The chunks closest to the question, best first, with their cosine scores."""

    nodes: list[NodeWithScore]


class Prompt(Event):
    """The chat to send to the LLM, and the chunks it was built from."""

    messages: list[ChatMessage]
    sources: list[NodeWithScore]


class RagState(BaseModel):
    """The run's typed state (``Context[RagState]``)."""

    question: str = ""
    top_k: int = 2
    documents: int = 0
    chunks: int = 0


# ---- the workflow ---------------------------------------------------------------------------


class RagWorkflow(Workflow):
    """Answer ``question`` from ``documents``: split and embed each document in parallel, retrieve
    the ``top_k`` closest chunks with a ``VectorStoreIndex``, and ask the LLM.

    Args:
        embed_model: the embedding (default: ``HashingEmbedding()``).
        llm: the LLM (default: ``MockLLM()``, which answers with its prompt).
        **kwargs: passed to ``Workflow`` (``timeout`` and the like).

    The result is ``{"answer": str, "sources": [{"file", "score", "text"}], "chunks": int}``,
    sources best first.
    """

    def __init__(
        self, *, embed_model: BaseEmbedding | None = None, llm: LLM | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.embed_model = embed_model or HashingEmbedding()
        self.llm = llm or MockLLM()

    @step
    async def ingest(
        self, ctx: Context[RagState], ev: RagStart
    ) -> DocumentEvent | StopEvent | None:
        if not ev.documents:
            return StopEvent(result={"answer": "", "sources": [], "chunks": 0})
        async with ctx.store.edit_state() as state:
            state.question = ev.question
            state.top_k = ev.top_k
            state.documents = len(ev.documents)
        for doc in ev.documents:
            ctx.send_event(DocumentEvent(document=doc))
        return None

    @step(num_workers=4)
    async def embed(self, ctx: Context[RagState], ev: DocumentEvent) -> ChunksEmbedded:
        nodes = word_splitter().get_nodes_from_documents([ev.document])
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        vectors = await self.embed_model.aget_text_embedding_batch(texts)
        for node, vector in zip(nodes, vectors, strict=True):
            node.embedding = vector
        source = ev.document.metadata.get("file_name", ev.document.doc_id)
        ctx.write_event_to_stream(Embedded(source=source, chunks=len(nodes)))
        return ChunksEmbedded(source=source, nodes=nodes)

    @step
    async def retrieve(self, ctx: Context[RagState], ev: ChunksEmbedded) -> Retrieved | None:
        state = await ctx.store.get_state()
        batches = ctx.collect_events(ev, [ChunksEmbedded] * state.documents)
        if batches is None:
            return None
        nodes = [node for batch in batches for node in batch.nodes]
        async with ctx.store.edit_state() as edited:
            edited.chunks = len(nodes)
        index = VectorStoreIndex(nodes=nodes, embed_model=self.embed_model)
        hits = await index.as_retriever(similarity_top_k=state.top_k).aretrieve(state.question)
        return Retrieved(nodes=hits)

    @step
    async def compose(self, ctx: Context[RagState], ev: Retrieved) -> Prompt:
        state = await ctx.store.get_state()
        context = "\n\n".join(
            f"[{hit.node.metadata.get('file_name', '?')}] {hit.node.get_content()}"
            for hit in ev.nodes
        )
        messages = [
            ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM_PROMPT),
            ChatMessage(
                role=MessageRole.USER,
                content=f"Context:\n{context}\n\nQuestion: {state.question}",
            ),
        ]
        return Prompt(messages=messages, sources=ev.nodes)

    @step
    async def answer(self, ctx: Context[RagState], ev: Prompt) -> StopEvent:
        reply = await self.llm.achat(ev.messages)
        state = await ctx.store.get_state()
        sources = [
            {
                "file": hit.node.metadata.get("file_name", "?"),
                "score": round(hit.get_score(), 6),
                "text": hit.node.get_content(),
            }
            for hit in ev.sources
        ]
        return StopEvent(
            result={"answer": reply.message.content, "sources": sources, "chunks": state.chunks}
        )
