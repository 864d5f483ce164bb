"""Bring the catalogs up to date with the code: `.venv/bin/python frontend/locales/update.py`.

Reads every sentence marked with `_`, `N_` or `ngettext` in `frontend/`, in the
shared sentences of `services/common` and in the service's refusals (`SOURCES`), and
the sentences of the model cards shipped (`MODEL_CARDS`), writes them to `messages.pot`,
and adds each new one, untranslated, to every language's `messages.po` (a sentence
no longer in the code is dropped from them). Then translate the new msgstr entries:
`tests/unit/test_i18n.py` fails while one is empty.
"""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the catalogs are data, not a package

from frontend.language import DOMAIN, LOCALES, catalog_path  # noqa: E402
from services.common.i18n import LANGUAGES, SOURCE_LANGUAGE  # noqa: E402

# Where sentences a student or teacher reads are marked: the front end, the client's error sentences,
# and the sentences the service writes (it sends their templates; `student_error` translates them).
SOURCES = (
    "frontend",
    "services/common/errors.py",
    "services/common/text.py",
    "services/inference/api/diffusion_service.py",
    "services/inference/api/register.py",
    "services/inference/classroom/sentences.py",
    "services/inference/classroom/validation.py",
    "services/inference/diffusion/teach.py",
    "services/inference/refusals.py",
    "services/inference/teaching/drawings.py",
    "services/inference/teaching/refusals.py",
    "services/inference/teaching/teaching.py",
    "services/inference/together/quickcheck.py",
    "services/inference/together/together.py",
)
# Model cards shipped with the service: their sentences for a scheduler they leave out are sent as templates too.
MODEL_CARDS = ("services/shapes/model/classroom.json",)
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
# Sentences another test reads as plain string constants (so they cannot be wrapped in N_): shown through `_`.
SHOWN_CONSTANTS = {"frontend/screens/model.py": ("SHAPES_SCHEDULE",)}  # test_measured_claims checks its numbers
TEMPLATE = LOCALES / f"{DOMAIN}.pot"


def source_files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        path = ROOT / source
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def extracted() -> Catalog:
    """Every marked sentence in the code, with where it is (the template's content)."""
    template = Catalog(project="Diffusion Classroom", fuzzy=False)
    for path in source_files():
        for line, message, comments, _context in extract_from_file("python", str(path), keywords=KEYWORDS):
            template.add(message, locations=[(str(path.relative_to(ROOT)), line)], auto_comments=comments)
    for source, names in SHOWN_CONSTANTS.items():
        for node in ast.parse((ROOT / source).read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(target := node.targets[0], ast.Name) and target.id in names:
                template.add(ast.literal_eval(node.value), locations=[(source, node.lineno)])
    for card in MODEL_CARDS:
        for reason in json.loads((ROOT / card).read_text()).get("schedulers_left_out", {}).values():
            template.add(reason, locations=[(card, 1)])
    return template


def rendered(catalog: Catalog, **options: bool) -> str:
    buffer = io.BytesIO()
    write_po(buffer, catalog, omit_header=False, sort_output=True, **options)
    text = buffer.getvalue().decode()
    # The header's dates change at every run: left out, so an unchanged catalog is an unchanged file.
    return "\n".join(line for line in text.splitlines() if "-Date:" not in line) + "\n"


def main() -> None:
    template = extracted()
    # Files, not lines: an edit elsewhere in a file leaves the template as it is.
    TEMPLATE.write_text(rendered(template, no_location=False, include_lineno=False))
    for code in LANGUAGES:
        if code == SOURCE_LANGUAGE:
            continue
        path = catalog_path(code)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as po:
                catalog = read_po(po, locale=code)
        else:
            catalog = Catalog(locale=code, project="Diffusion Classroom", fuzzy=False)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        path.write_text(rendered(catalog, no_location=True))
        untranslated = sum(1 for message in catalog if message.id and not message.string)
        print(f"{code}: {len(catalog)} sentences, {untranslated} to translate")


if __name__ == "__main__":
    main()
