"""Quick checks: a multiple-choice question the teacher asks the class, answered once by each student.

The right answer and the tally stay with the teacher until the teacher reveals
them; then every student sees both, and answers are closed. A student is the
id the front end asserts (it holds the API token): one answer each.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from services.common.api import pb
from services.common.i18n import N_, Sentence
from services.common.text import hidden_characters
from services.inference.refusals import AlreadyAnswered, NoQuickCheck, RequestError

QUESTION_CHARS = 200
CHOICE_CHARS = 80
MIN_CHOICES, MAX_CHOICES = 2, 6
MAX_ANSWERS = 10_000  # more students than any class server holds


@dataclass
class QuickCheck:
    question: str
    choices: list[pb.QuickCheckChoice]
    answer: int
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    revealed: bool = False
    answers: dict[str, int] = field(default_factory=dict)  # student id -> the choice's index

    def answer_from(self, student: str, question_id: str, choice: int) -> int:
        """Count one student's answer (raises NoQuickCheck, AlreadyAnswered or RequestError)."""
        if question_id != self.id or self.revealed:
            raise NoQuickCheck()
        if not 0 <= choice < len(self.choices):
            raise RequestError(
                [("choice", Sentence(N_("Choose one of the {count} answers."), count=len(self.choices)))]
            )
        if student in self.answers:
            raise AlreadyAnswered()
        if len(self.answers) >= MAX_ANSWERS:
            raise NoQuickCheck()
        self.answers[student] = choice
        return choice

    def tally(self) -> list[int]:
        counts = [0] * len(self.choices)
        for choice in self.answers.values():
            counts[choice] += 1
        return counts

    def message(self, for_teacher: bool) -> pb.QuickCheck:
        """The question as a student sees it (answer and tally once revealed), or as the teacher does."""
        shown = pb.QuickCheck(id=self.id, question=self.question, choices=self.choices, revealed=self.revealed,
                              answered=len(self.answers))  # fmt: skip
        if for_teacher or self.revealed:
            shown.answer = self.answer
            shown.tally.extend(self.tally())
        return shown


def teachers_own(question: str, choices: list[str], answer: int) -> QuickCheck:
    """A question the teacher typed, checked: plain text, 2 to 6 short answers, the right one among them."""
    question = " ".join(question.split())
    words = [" ".join(choice.split()) for choice in choices]
    problems: list[tuple[str, str]] = []
    if not question or len(question) > QUESTION_CHARS or hidden_characters(question):
        plain = N_("Type a question of at most {limit} characters, in plain text.")
        problems.append(("question", Sentence(plain, limit=QUESTION_CHARS)))
    if not MIN_CHOICES <= len(words) <= MAX_CHOICES:
        between = N_("Give {fewest} to {most} answers.")
        problems.append(("choices", Sentence(between, fewest=MIN_CHOICES, most=MAX_CHOICES)))
    if any(not w or len(w) > CHOICE_CHARS or hidden_characters(w) for w in words):
        words_needed = N_("Each answer needs words, at most {characters} characters of plain text.")
        problems.append(("choices", Sentence(words_needed, characters=CHOICE_CHARS)))
    if not 0 <= answer < len(words):
        problems.append(("answer", Sentence(N_("Mark which answer is right."))))
    if problems:
        raise RequestError(problems)
    return QuickCheck(question, [pb.QuickCheckChoice(text=w) for w in words], answer)
