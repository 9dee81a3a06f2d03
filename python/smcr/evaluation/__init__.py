"""Re-ID evaluation: distances, sort-free mAP/mINP/CMC (Market-1501 protocol),
k-reciprocal re-ranking on the sparse Jaccard kernel, and the `smcr evaluate` command."""

from .distance import METRICS, distance_matrix
from .evaluator import MARKET_PATTERN, add_evaluate_parser, evaluate, parse_labels
from .metrics import EvalResult, NoValidQueryError, evaluate_distmat
from .reference import evaluate_reference
from .rerank import jaccard_query_gallery, re_ranking

__all__ = [
    "MARKET_PATTERN",
    "METRICS",
    "EvalResult",
    "NoValidQueryError",
    "add_evaluate_parser",
    "distance_matrix",
    "evaluate",
    "evaluate_distmat",
    "evaluate_reference",
    "jaccard_query_gallery",
    "parse_labels",
    "re_ranking",
]
