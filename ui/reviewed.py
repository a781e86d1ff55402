"""The "Reviewed answers" panel: approved answers to questions like the one being asked (faiss).

An approved correction helps colleagues at once, before any retraining. The index
(:class:`serve.retrieval.ApprovedIndex`) holds the scrubbed questions of every approved answer; it is
rebuilt at once after an approval in this process, and checked every ``refresh_s`` seconds for
approvals made elsewhere (other replicas). Only scrubbed text is shown: identifiers in one clinician's
conversation never reach another's screen.
"""

from __future__ import annotations

from feedback.store import ApprovedAnswer  # noqa: F401 (render's doctest builds one)
from serve.retrieval import ApprovedIndex, Similar

# the panel searches the same index of approved, scrubbed answers that the gateway's retrieval uses
ReviewedAnswers = ApprovedIndex
__all__ = ["ReviewedAnswers", "Similar", "render"]


def render(similar: list[Similar]) -> str:
    """The panel's Markdown.

    >>> import datetime as dt
    >>> a = ApprovedAnswer("What is ECOG 1?", "Restricted in strenuous activity.", 1, 2, 3, dt.datetime(2026, 1, 1))
    >>> print(render([Similar(a, 0.91)]))
    **Reviewed answers** (approved by a reviewer)
    <BLANKLINE>
    1. *What is ECOG 1?* (similarity 0.91)
    <BLANKLINE>
       Restricted in strenuous activity.
    """
    if not similar:
        return "**Reviewed answers**: none approved yet for questions like this one."
    lines = ["**Reviewed answers** (approved by a reviewer)", ""]
    for n, s in enumerate(similar, 1):
        answer = s.answer.answer.strip().replace("\n", "\n   ")
        lines += [f"{n}. *{s.answer.question.strip()}* (similarity {s.similarity:.2f})", "", f"   {answer}"]
    return "\n".join(lines)
