"""Reranking in BEIR's shape, as one Score call with a candidate list per query.

The request building and the reply parsing are module functions so that every client (the blocking one,
the asyncio one) sends the same request and reads the reply the same way; the client only makes the call.
"""
import dataclasses
from typing import Dict, List, Mapping, Optional

import numpy as np


def beir_document_text(document):
    """A corpus entry's text as BEIR's SentenceBERT.encode_corpus joins it: ``title + " " + text``,
    stripped, or the text alone (stripped) when the entry has no title."""
    if "title" in document:
        return (document["title"] + " " + document["text"]).strip()
    return document["text"].strip()


@dataclasses.dataclass(frozen=True)
class RerankPlan:
    """What a rerank request asked, to read its reply: the query ids and each one's candidate ids, in order."""

    query_ids: List[str]
    candidates: List[List[str]]


def rerank_request(request_type, model, queries: Mapping[str, str], results: Mapping[str, Mapping[str, float]],
                   corpus: Optional[Mapping[str, Mapping[str, str]]] = None, top_k: int = 100):
    """(ScoreRequest, RerankPlan) for ``rerank``: for each query of ``results``, its ``top_k`` candidates by
    their first-stage score (all of them when it has fewer), as BEIR's ``Rerank.rerank`` picks them. With a
    ``corpus``, each candidate carries its BEIR-joined text, so that one the cache lacks is computed (and
    stored under its id); an id missing from the corpus goes without text.
    ``request_type`` is the ScoreRequest message class.
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k!r}")
    request = request_type(model=model)
    plan = RerankPlan(query_ids=[], candidates=[])
    for query_id, first_stage in results.items():
        if query_id not in queries:
            raise ValueError(f"results has query id {query_id!r}, which queries does not have")
        ranked = sorted(first_stage.items(), key=lambda item: item[1], reverse=True)[:int(top_k)]
        document_ids = [document_id for document_id, _ in ranked]
        for document_id in document_ids:
            if not isinstance(document_id, str):
                raise TypeError(f"document ids must be strings, as BEIR's are; got {type(document_id).__name__}: {document_id!r}")
        request.queries.append(queries[query_id])
        entry = request.candidates.add()
        entry.ids.extend(document_ids)
        if corpus is not None:
            entry.texts.extend(beir_document_text(corpus[d]) if d in corpus else "" for d in document_ids)
        plan.query_ids.append(query_id)
        plan.candidates.append(document_ids)
    return request, plan


def rerank_results(response, plan: RerankPlan, missing_source: int) -> Dict[str, Dict[str, float]]:
    """``{query_id: {doc_id: score}}``, each query's candidates best first, from a Score reply to ``rerank_request``. Raises ``FailedPreconditionError``
    naming the candidates the server had no vector for and no text to compute one from (``missing_source`` is
    ROW_SOURCE_MISSING's number): a missing candidate is never given a made-up score."""
    counts = np.asarray(response.candidate_counts, dtype=np.int64)
    scores = np.frombuffer(response.candidate_scores, dtype="<f4")
    if counts.tolist() != [len(c) for c in plan.candidates] or scores.shape[0] != counts.sum():
        raise ValueError("the server's Score reply does not match the candidate lists sent: is it older than this client?")
    missing = np.flatnonzero(np.asarray(response.candidate_sources, dtype=np.int64) == missing_source)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    if missing.size:
        from .client import FailedPreconditionError  # here: client imports this module

        query_of = np.searchsorted(offsets, missing, side="right") - 1
        examples = ", ".join(
            f"{plan.candidates[q][p - offsets[q]]!r} (query {plan.query_ids[q]!r})"
            for q, p in list(zip(query_of.tolist(), missing.tolist()))[:5])
        raise FailedPreconditionError(
            "FAILED_PRECONDITION",
            f"{missing.size} candidates have no cached vector and no text to compute one from, e.g. {examples}: "
            "pass corpus={doc_id: {'title': ..., 'text': ...}} with them, or Put their vectors first")
    reranked = {}
    for q, (query_id, document_ids) in enumerate(zip(plan.query_ids, plan.candidates)):
        own = scores[offsets[q]:offsets[q + 1]]
        best_first = np.argsort(-own, kind="stable")
        reranked[query_id] = {document_ids[i]: float(own[i]) for i in best_first.tolist()}
    return reranked
