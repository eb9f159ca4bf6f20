"""Entity-level precision, recall and F1 of tag sequences (IOB1, IOB2, IOE, IOBES), with conlleval's chunking
rules (what the ``seqeval`` package computes in its default mode), and token accuracy."""

import datasets
import evaluate

_DESCRIPTION = """
``predictions`` and ``references`` are lists of tag sequences (``["B-PER", "I-PER", "O", ...]``). An entity is a
chunk of one type, started and ended as conlleval does (a ``I-X`` after ``O`` or after another type starts one).
Returns ``overall_precision``, ``overall_recall``, ``overall_f1`` (entities found exactly: same type, same span),
``overall_accuracy`` (tokens), and for each entity type ``{"precision", "recall", "f1", "number"}``.
"""


def _split(tag):
    return ("O", "") if tag in ("O", "") else (tag[0], tag[2:] if len(tag) > 2 else "")


def _ends(previous, tag, previous_type, tag_type):
    return (previous in ("E", "S") or (previous in ("B", "I") and tag in ("B", "S", "O"))
            or (previous != "O" and previous_type != tag_type))


def _starts(previous, tag, previous_type, tag_type):
    return (tag in ("B", "S") or (previous in ("E", "S", "O") and tag in ("I", "E"))
            or (tag != "O" and previous_type != tag_type))


def entities(tags):
    """``{(type, first, last)}``: the chunks of one tag sequence."""
    found, start, previous, previous_type = set(), None, "O", ""
    for position, tag in enumerate([*tags, "O"]):
        prefix, tag_type = _split(tag)
        if start is not None and _ends(previous, prefix, previous_type, tag_type):
            found.add((previous_type, start, position - 1))
            start = None
        if _starts(previous, prefix, previous_type, tag_type):
            start = position
        previous, previous_type = prefix, tag_type
    return found


def _scores(correct, predicted, true):
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class Seqeval(evaluate.Metric):
    def _info(self):
        sequence = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_DESCRIPTION,
                                   features=datasets.Features({"predictions": sequence, "references": sequence}))

    def _compute(self, predictions, references):
        predicted, true = set(), set()
        tokens = right = 0
        for row, (guess, gold) in enumerate(zip(predictions, references)):
            predicted |= {(row, *entity) for entity in entities(guess)}
            true |= {(row, *entity) for entity in entities(gold)}
            tokens += len(gold)
            right += sum(g == t for g, t in zip(guess, gold))
        result = {}
        for entity_type in sorted({entity[1] for entity in true | predicted}):
            of_type = [{e for e in group if e[1] == entity_type} for group in (predicted, true)]
            precision, recall, f1 = _scores(len(of_type[0] & of_type[1]), len(of_type[0]), len(of_type[1]))
            result[entity_type] = {"precision": precision, "recall": recall, "f1": f1, "number": len(of_type[1])}
        precision, recall, f1 = _scores(len(predicted & true), len(predicted), len(true))
        result.update(overall_precision=precision, overall_recall=recall, overall_f1=f1,
                      overall_accuracy=right / tokens if tokens else 0.0)
        return result
