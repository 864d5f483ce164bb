"""Lesson 9, what it learned from: the very pictures Shapes learned from, what it never saw, and did it copy.

Every number comes from the service, measured on what is on screen: the training pictures are
drawn again by the program that drew them (TrainingSamples), the word vectors' lengths come from
Tokenize, and the distances from the student's own picture (NearestTraining). Sentences about
what the model did are written only when the judge or the numbers show it on this run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from frontend.client import client_for, shapes_client, student_id
from frontend.drawing.look import alt_text
from frontend.drawing.views import enlarge, guarded, plain, said
from frontend.language import N_, _, ngettext, number
from frontend.material.examples import examples
from frontend.material.shapes_beside import say_shapes_beside
from frontend.stream.load import load
from frontend.stream.wire import TrajectoryView
from services.common.api import pb
from services.common.codecs import decode_image
from services.common.shapes_data import caption_of

PAGE = 12  # training pictures a page shows
DOG = "a dog"  # a prompt: prompts stay English in every language (the model learned English words)
CARLINI = N_(
    "Researchers got Stable Diffusion to paint a few of its training pictures again almost exactly, mostly "
    "pictures that were in its training data many times over (Carlini et al. 2023, “Extracting Training Data "
    "from Diffusion Models”). Most of its pictures are not copies. Both are true."
)
QUESTIONS = (
    N_(
        "Real models learn from pictures people made and put online. Whose pictures should a model be allowed to "
        "learn from? Should the people who made them be asked first?"
    ),
    N_(
        "A model can paint “in the style of” a living artist. Is that copying? What would you want if it were "
        "your style?"
    ),
    N_("What should count as a copy: the very same picture, a close one, or the same idea?"),
    N_(
        "Look at “What it never saw”: did Shapes put together words it learned apart? Is a picture made from what "
        "a model learned something new?"
    ),
    N_("Who should decide the rules: the artists, the companies, the law, schools?"),
)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def training_page(server: str, offset: int, _student: str = "", _name: str = "") -> pb.TrainingSamplesResponse:
    """A page of training pictures: the same for every student (drawn by a program), so asked once per server.

    The student who asks first is named (not part of the cache's key): the service checks they are still in the
    class and counts the call in their allowance.
    """
    return client_for(server).training_samples(offset, PAGE, _student, _name)


st.title(_("9. What it learned from"))
say_shapes_beside()
client = shapes_client()  # Shapes: the server's model, or the one beside it (frontend/client.py)
info = guarded(client.model_info)
start = st.session_state.get("training-page", 1) - 1  # pages are numbered from 1
name = st.session_state.get("display_name", "")
training = guarded(lambda: training_page(client.settings.inference_addr, start * PAGE, student_id(), name))
if info is None or training is None:
    st.stop()


def judged(picture: np.ndarray) -> str:
    """What a student would say of a Shapes picture, as the pixel judge reads it ("an orange star at the top")."""
    from services.common.shapes_judge import judge

    verdict = judge(picture)
    return caption_of(verdict.colour, verdict.shape, verdict.position) if verdict.found else ""


def follows(picture: np.ndarray, caption: str) -> bool:
    """Whether the judge finds the caption's colour, shape and place in a Shapes picture."""
    from services.common.shapes_judge import judge

    verdict = judge(picture)
    words = caption.split()
    return (
        verdict.found
        and verdict.colour in words
        and verdict.shape in words
        and (verdict.position == "" or caption.endswith(verdict.position))
    )


def ask_questions() -> None:
    st.subheader(_("Questions to argue about"))
    st.markdown(
        _(
            "There are no answers on this page: these are for your class to argue. Stable Diffusion (reported by "
            "its makers and researchers, not measured here) learned from billions of pictures and captions taken "
            "from the web (subsets of LAION-5B)."
        )
        + " "
        + _(CARLINI)
    )
    st.markdown("".join(f"\n{n}. {_(q)}" for n, q in enumerate(QUESTIONS, 1)))


if not training.available:
    st.info(said(training.unavailable_reason))
    ask_questions()
    st.stop()

# 1. The training pictures
st.subheader(_("The pictures it learned from"))
size = training.training_set_size
first = training.runs[0]
seen_each = (
    _(
        "It practised {steps} times on {batch} pictures at a time, each time picked at random from them, so it saw "
        "each one about {times} times: some more, a few never."
    )
    if first.pictures == size
    else _(
        "It practised {steps} times on {batch} pictures at a time, each time picked at random from them, so it saw "
        "each of the first {pictures} about {times} times: some more, a few never."
    )
)
st.markdown(
    _(
        "{model} learned from **{size} pictures**, each drawn by a short program with its exact caption. The program "
        "drew them from a seed, so they can be drawn again exactly: these are the very pictures, in the order the "
        "program drew them."
    ).format(model=info.model_display_name, size=number(size))
    + " "
    + seen_each.format(
        steps=number(first.steps), batch=number(first.batch_size), pictures=number(first.pictures),
        times=number(first.steps * first.batch_size / first.pictures, digits=1),
    )
)  # fmt: skip
for run in training.runs[1:]:
    st.markdown(
        _("Then it practised {steps} more times on the first {pictures} pictures.").format(
            steps=number(run.steps), pictures=number(run.pictures)
        )
        + f" {plain(run.what)}."  # the service's own sentence about the run (English)
    )
last_page = (size - 1) // PAGE
st.number_input(
    _("Page (of {pages})").format(pages=number(last_page + 1)), min_value=1, max_value=last_page + 1,
    key="training-page", step=1, format="%d",
    help=_("Each page shows {count} training pictures, in the order the model saw them.").format(count=PAGE),
)  # fmt: skip
columns = st.columns(6)
for n, picture in enumerate(training.pictures):
    copies = f" (×{picture.copies_in_training})" if picture.copies_in_training > 1 else ""
    columns[n % 6].image(
        enlarge(decode_image(picture.image), 128),
        caption=f"#{picture.index}: {plain(picture.caption)}{copies}",
        alt=alt_text(_("training picture number {index}").format(index=picture.index), picture.caption),
    )
most = max(training.pictures, key=lambda p: p.copies_in_training, default=None)
if most is not None and most.copies_in_training > 1:
    st.markdown(
        _(
            "A caption that says where the shape goes always draws the very same picture, so many training "
            "pictures are copies: “{caption}” is in the training set **{count} times** (×N under a picture says "
            "how often)."
        ).format(caption=plain(most.caption), count=most.copies_in_training)
    )

# 1b. How it learned: the same prompts and starting noise at checkpoints of a run of the recipe
if training.checkpoints:
    st.subheader(_("How it learned"))
    steps = sorted({c.step for c in training.checkpoints})
    captions = list(dict.fromkeys(c.caption for c in training.checkpoints))
    finished = {c.step for c in training.checkpoints if c.finished}
    right = dict.fromkeys(steps, 0)
    for row in captions:
        st.markdown(f"“{plain(row)}”")
        columns = st.columns(len(steps))
        for column, step in zip(columns, steps, strict=True):
            kept = next(c for c in training.checkpoints if c.step == step and c.caption == row)
            picture = decode_image(kept.image)
            right[step] += follows(picture, row)
            when = (_("finished ({steps} steps)") if step in finished else _("after {steps} steps")).format(
                steps=number(step)
            )
            column.image(
                enlarge(picture, 96), caption=when,
                alt=alt_text(_("the model's picture {when}").format(when=when), row),
            )  # fmt: skip
    first, last = steps[0], steps[-1]
    run_steps = [s for s in steps if s not in finished]
    end = (
        _("the finished model, the one you use") if last in finished else _("{steps} steps").format(steps=number(last))
    )
    middle = [s for s in run_steps[1:] if s != last]
    painted_as = (
        _(
            "The same {count} prompts, each from the same starting noise, painted by the model as it was after "
            "{first} practice steps, then {middle}, and {end}."
        )
        if middle
        else _(
            "The same {count} prompts, each from the same starting noise, painted by the model as it was after "
            "{first} practice steps, and {end}."
        )
    )
    st.markdown(
        painted_as.format(
            count=len(captions), first=number(first), middle=", ".join(number(s) for s in middle), end=end
        )
        + " "
        + _(
            "The pixel judge finds **{right_first} of {count}** right after {first} steps and **{right_last} of "
            "{count}** for {end}."
        ).format(right_first=right[first], right_last=right[last], count=len(captions), first=number(first), end=end)
        + f" {plain(training.checkpoints_run)}"  # the service's own sentence about the run (English)
    )

# 2. What it never saw
st.subheader(_("What it never saw"))
items = {item.label("prompt"): item for item in examples("never-seen", client.settings.inference_addr)}
runs: dict[str, TrajectoryView] = {}
pairs = list(info.held_out_pairs)
if pairs:
    named = [caption_of(*pair.split(maxsplit=1)) for pair in pairs]  # "an orange star": the prompts' English
    st.markdown(
        _(
            "No training picture shows {pairs} or {last}: the program never drew those colours and shapes "
            "together. Asked anyway, it painted these. Under each is what the judge sees in it (the judge is a "
            "program that reads the colour, shape and place of the shape in a picture):"
        ).format(pairs=", ".join(named[:-1]), last=named[-1])
    )
    columns = st.columns(max(1, len([k for k in items if k != "dog"])))
    for column, (name, item) in zip(columns, [(k, v) for k, v in items.items() if k != "dog"], strict=False):
        run = guarded(lambda item=item: load(item.request, lesson_entry=item.id, client=client))
        if run is None or run.image is None:
            continue
        runs[name] = run
        column.image(
            enlarge(run.image, 160),
            caption=plain(item.request.prompt),
            alt=alt_text(_("the final picture of a pair never seen in training"), item.request.prompt),
        )
        seen = judged(run.image)  # the judge's words are the prompts' own (English) words
        column.markdown(_("The judge sees {seen}.").format(seen=seen) if seen else _("The judge finds no shape in it."))

# 3. A word it never learned
st.subheader(_("A word it never learned"))
learned = guarded(lambda: client.tokenize("a red circle on the left", student_id()))
unknown = guarded(lambda: client.tokenize("a dog", student_id()))
dog = next((t for t in unknown.tokens if t.text == "dog"), None) if unknown else None
if learned is not None and dog is not None:
    words = [t for t in learned.tokens if t.kind == pb.TOKEN_KIND_PROMPT]
    table = pd.DataFrame(
        {
            _("word"): [t.text for t in [*words, dog]],
            _("learned in training"): [_("yes") if t.known else _("no") for t in [*words, dog]],
            _("length of its vector"): [round(t.input_norm, 3) for t in [*words, dog]],
        }
    )
    st.dataframe(table, hide_index=True)
    low, high = min(t.input_norm for t in words), max(t.input_norm for t in words)
    lengths = (
        _("its vector's length is **{length}**, shorter than any of them (the words above: {low} to {high})")
        if dog.input_norm < low
        else _("its vector's length is **{length}**, longer than any of them (the words above: {low} to {high})")
        if dog.input_norm > high
        else _("its vector's length is **{length}**, within their range (the words above: {low} to {high})")
    ).format(length=number(dog.input_norm, digits=3), low=number(low, digits=3), high=number(high, digits=3))
    st.markdown(
        _("Each word starts as a list of random numbers (its vector). Training changes the numbers of the words its "
          "captions use.")
        + " "
        + (
            _("“dog” is in the model's dictionary, but no caption ever used it, so its numbers are still the random "
              "ones: {lengths}.")
            if not dog.known
            else _("“dog” was in its captions, so training changed its numbers too: {lengths}.")
        ).format(lengths=lengths)
    )  # fmt: skip
    dog_item = items.get("dog")
    dog_run = guarded(lambda: load(dog_item.request, lesson_entry=dog_item.id, client=client)) if dog_item else None
    if dog_run is not None and dog_run.image is not None:
        runs["dog"] = dog_run
        left, right = st.columns([1, 3])
        left.image(enlarge(dog_run.image, 160), caption=DOG, alt=alt_text(_("the final picture"), DOG))
        seen = judged(dog_run.image)  # the judge's words are the prompts' own (English) words
        if not dog.known:
            painted = (
                _("Asked for “a dog”, a word it never learned, it painted a picture anyway: the judge sees {seen}.")
                if seen
                else _(
                    "Asked for “a dog”, a word it never learned, it painted a picture anyway, but the judge finds no "
                    "shape in it."
                )
            )
        else:
            painted = (
                _("Asked for “a dog”, it painted a picture: the judge sees {seen}.")
                if seen
                else _("Asked for “a dog”, it painted a picture, but the judge finds no shape in it.")
            )
        right.markdown(painted.format(seen=seen))

# 4. Did it copy?
st.subheader(_("Did it copy?"))
st.markdown(
    _(
        "Nothing is looked up while the model paints: it only predicts noise, step by step. Yet a model can learn "
        "a picture it saw many times so well that it paints it again. Make a picture and compare it with the "
        "training pictures nearest to it."
    )
)
with st.form("copy-check"):
    prompt = st.text_input(_("Prompt"), "a red circle on the left", max_chars=info.limits.max_prompt_chars)
    seed = st.number_input(_("Seed"), min_value=0, max_value=info.limits.max_seed or None, value=3)
    go = st.form_submit_button(_("Paint and compare"), type="primary")
if go:
    request = pb.GenerateRequest(prompt=prompt, seed=int(seed), width=info.default_width, height=info.default_height)
    mine = guarded(lambda: load(request, planned="your picture", client=client))
    found = guarded(lambda: client.nearest_training(mine.key, 4, student_id(), name)) if mine is not None else None
    if found is not None and found.available and found.neighbours:
        st.session_state["copy-check-answer"] = found.SerializeToString()
if "copy-check-answer" in st.session_state:
    found = pb.NearestTrainingResponse.FromString(st.session_state["copy-check-answer"])
    columns = st.columns(1 + len(found.neighbours))
    columns[0].image(
        enlarge(decode_image(found.picture), 128), caption=_("your picture"), alt=alt_text(_("your finished picture"))
    )
    for column, n in zip(columns[1:], found.neighbours, strict=True):
        column.image(
            enlarge(decode_image(n.picture.image), 128),
            caption=_("#{index}: {caption}; {distance} levels").format(
                index=n.picture.index, caption=plain(n.picture.caption), distance=number(n.pixel_distance, digits=1)
            ),
            alt=alt_text(
                _("training picture number {index}, near yours").format(index=n.picture.index),
                n.picture.caption,
                _("{distance} levels a pixel away").format(distance=number(n.pixel_distance, digits=1)),
            ),
        )
    near = found.neighbours[0]
    st.markdown(
        _(
            "Searched: the first **{sample}** of the {size} training pictures ({distinct} different ones). The "
            "nearest, “{caption}”, differs from yours by a typical (root-mean-square) **{distance}** levels a pixel "
            "(0 is the same picture, 255 the most different). Even a perfect copy would differ by **{copy}**, "
            "because every picture the model paints passes through its decoder, which changes it a little."
        ).format(
            sample=number(found.sample_size), size=number(found.training_set_size),
            distinct=number(found.distinct_in_sample), caption=plain(near.picture.caption),
            distance=number(near.pixel_distance, digits=1), copy=number(found.copy_pixel_distance, digits=1),
        )
        + " "
        + ngettext(
            "That training picture is in the training set {count} time.",
            "That training picture is in the training set {count} times.",
            near.picture.copies_in_training,
        ).format(count=near.picture.copies_in_training)
    )  # fmt: skip
    st.caption(
        _(
            "Levels: the root-mean-square difference of the colour values (0 to 255), at 64 × 64 pixels. In the "
            "model's own numbers (its latents) the nearest is {distance} away."
        ).format(distance=number(near.latent_distance, digits=3))
    )

ask_questions()
