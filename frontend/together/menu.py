"""The menu's lessons as the teacher leads them: each page's title (as in `app.py`) and the examples it opens.

Several lessons open the same catalog collection (lessons 1, 3, 4 and 5 all start from
the prompt pairs), so a collection's title does not name the lesson being led: the
teacher picks a lesson of the menu, the class is told its title.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frontend.language import N_, _
from services.common.api import pb


@dataclass(frozen=True)
class MenuLesson:
    page: str  # the page's file in frontend/screens/lessons, without ".py": what SetPresentRequest.lesson carries
    title: str  # as in the menu (frontend/app.py), in English: `_` translates it where it is shown
    collections: tuple[str, ...]  # the catalog collections whose examples the page opens
    labels: dict[str, str] = field(default_factory=dict)  # only the examples with these labels (what the page shows)

    def examples(self, entries: list[pb.LessonEntry]) -> list[pb.LessonEntry]:
        """The entries of this lesson's collections that it opens, in catalog order."""
        return [
            entry
            for entry in entries
            if entry.collection in self.collections and all(entry.labels.get(k) == v for k, v in self.labels.items())
        ]


LESSONS: tuple[MenuLesson, ...] = (
    MenuLesson("pipeline", N_("1. The whole pipeline"), ("prompt-pairs",), {"guidance_scale": "7"}),
    MenuLesson("words", N_("2. Words to numbers"), ()),
    MenuLesson("noise_to_image", N_("3. From noise to image"), ("prompt-pairs",), {"guidance_scale": "7"}),
    MenuLesson("guidance", N_("4. Guidance"), ("prompt-pairs",)),
    MenuLesson("change_one_word", N_("5. Change one word"), ("prompt-pairs",), {"guidance_scale": "7"}),
    MenuLesson("seeds_schedulers", N_("6. Seeds and schedulers"), ("seed-gallery", "scheduler-comparison")),
    MenuLesson("attention", N_("7. Which word paints where"), ("attention-maps",)),
    MenuLesson("branch", N_("8. When does the picture decide?"), ("branch-at-step",)),
    MenuLesson("learned_from", N_("9. What it learned from"), ("never-seen",)),
)
BY_PAGE = {lesson.page: lesson for lesson in LESSONS}


def led_title(present: pb.PresentState) -> str:
    """The title of the lesson the teacher leads: the menu's, else (an older teacher page) the collection's."""
    lesson = BY_PAGE.get(present.lesson)
    return _(lesson.title) if lesson is not None else present.collection_title
