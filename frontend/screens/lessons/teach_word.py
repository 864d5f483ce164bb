"""Lesson 10, teach it a new word: the class draws a new shape, the teacher names it, Shapes learns it live.

Students draw on a canvas of our own (frontend/drawing/canvas.py) and hand their
drawings in; the teacher (the teacher's page, or this page with the teacher code at
hand) teaches the word. Every page shows the training as the service reports it
(GetTeaching): the step, the loss curve, the latest pictures. Once the word is
taught, the student prompts it here through the Playground's own streaming (the
service routes a class's prompts to the class's model). Every sentence about what the
model did is made from the numbers on screen.
"""

from __future__ import annotations

import streamlit as st

from frontend.client import StudentError, get_client, shapes_client, student_id
from frontend.drawing.canvas import HandedIn, drawing_canvas
from frontend.drawing.views import PREVIEW_NOTE, enlarge, guarded, plain, said
from frontend.language import N_, _, ngettext, number
from frontend.material.live import follow_live
from frontend.material.shapes_beside import say_shapes_beside
from frontend.player import play_trajectory
from frontend.stream.load import request_with
from frontend.stream.progress import Phase
from frontend.stream.reader import StreamReader
from frontend.stream.store import lesson_store
from frontend.stream.tabs import stop_when_tab_closes
from frontend.together.teach_side import TRAINING, live_training, teach_a_word
from services.common.api import pb
from services.common.include_mask import Probe
from services.common.shapes_world import SHAPES

PROMPT_KEY = "teach-prompt"
ABOUT = N_(
    "A word means something to the model only because training tied it to pictures. Shapes, the small model "
    "made for this classroom, knows just four shapes: {shapes}. It knows them because thousands of its "
    "training pictures came with captions like “a red circle on the left”.\n\n"
    "In this lesson your class teaches it **one new word**. Everyone draws the new shape below and hands the "
    "drawing in; your teacher names the word (say, “heart”) and presses Teach. Then the model practises on them, "
    "and you can watch it here. Your drawings become training pictures in the model's own style "
    "(its colours, places and sizes, each with a caption that uses the new word).\n\n"
    "Only two parts of the model change: the new word's **vector** (the list of numbers the model reads for "
    "that word) and the **layers that read the words** (cross-attention's keys and values, as in the method "
    "called Custom Diffusion). Everything else stays as it was. Pictures of the four shapes it already knows "
    "are mixed in while it practises, so it does not forget them. Only your class's copy of the model learns "
    "the word: other classes on this server do not get it."
)
DRAW_HOW = N_(
    "Draw the outline of the new shape, big, in the middle. The model fills it in and paints it in its own "
    "colours, so draw only the shape: no colour, no words, no background."
)


def handed_in_sentence(yours: int, class_drawings: int) -> str:
    return ngettext(
        "You have {yours} drawing in; the class has {count}.", "You have {yours} drawings in; the class has {count}.",
        yours,
    ).format(yours=number(yours), count=number(class_drawings))  # fmt: skip


st.title(_("10. Teach it a new word"))
say_shapes_beside()
client = shapes_client()  # Shapes: the server's model, or the one beside it (frontend/client.py)
name = st.session_state.get("display_name", "")
# The shapes' names are the prompts' own (English) words: they stay as they are in every language.
st.markdown(_(ABOUT).format(shapes=_("{shapes} and {last}").format(shapes=", ".join(SHAPES[:-1]), last=SHAPES[-1])))
state = guarded(lambda: client.teaching(student_id(), name))
if state is None:
    st.stop()
if state.taught_word:
    st.markdown(_("Your class has taught it one more word already: “{word}”.").format(word=plain(state.taught_word)))
if not state.teachable:
    info = guarded(client.model_info)
    named = info is not None and info.model_display_name
    st.info(
        (_("{model} cannot be taught a new word on this server.").format(model=plain(info.model_display_name))
         if named else _("This server's model cannot be taught a new word on this server."))
        + " "
        + (said(state.message) if state.message else _("Teaching a word here is built for Shapes, the small model "
           "trained for this classroom.")),
        icon=":material/block:",
    )  # fmt: skip
    st.stop()

if st.session_state.get("teacher_code"):  # the teacher, with the code at hand: the controls are here too
    with st.expander(_("Your controls (teacher)"), expanded=True):
        teach_a_word(live=False)  # the training shows below, as every student sees it

# 1. Draw
st.subheader(_("Draw the new shape"))
if state.phase == TRAINING:
    st.info(_("The model is training on the class's drawings now: handing in is closed until it is done."))
else:
    st.markdown(_(DRAW_HOW))
    canvas_column, note_column = st.columns([1, 1])

    def hand_in(drawing: HandedIn) -> bool:
        try:
            reply = client.submit_drawing(drawing.png, student_id(), name)
        except StudentError as error:
            note_column.error(said(str(error)), icon=":material/error:")
            return False
        # Said once, as it happens: the live view below keeps the class's count up to date.
        note_column.success(_("Handed in.") + " " + handed_in_sentence(reply.yours, reply.class_drawings),
                            icon=":material/check_circle:")  # fmt: skip
        return True

    with canvas_column:
        drawing_canvas(
            key="teach-canvas", on_hand_in=hand_in,
            on_refused=lambda sentence: note_column.error(sentence, icon=":material/error:"),
        )  # fmt: skip

# 2. The training, live
st.subheader(_("The training, live"))
live_training(state, key="teach-student", student=student_id(), name=name)

# 3. Prompt the new word
if state.taught_word and state.phase != TRAINING:  # taught, or stopped with the word it had kept
    word = state.taught_word
    st.subheader(_("Try “{word}”").format(word=plain(word)))
    info = guarded(client.model_info)
    if info is None:
        st.stop()
    if st.session_state.get("teach-prompt-word") != word:  # a new word: the box starts from it
        st.session_state[PROMPT_KEY] = f"a blue {word} on the right"
        st.session_state["teach-prompt-word"] = word
    prompt = st.text_input(_("Prompt"), key=PROMPT_KEY, max_chars=info.limits.max_prompt_chars)
    seed = st.number_input(_("Seed"), min_value=0, max_value=int(info.limits.max_seed) or None, value=1, step=1)
    if st.button(_("Make the picture"), type="primary", key="teach-make"):
        request = pb.GenerateRequest(
            prompt=prompt, seed=int(seed), num_inference_steps=info.default_steps,
            guidance_scale=info.default_guidance_scale, width=info.default_width, height=info.default_height,
            scheduler=info.default_scheduler,
        )  # fmt: skip
        request = request_with(request, [Probe.LATENT_PREVIEW, Probe.PREDICTED_X0_PREVIEW], client)
        previous = st.session_state.get("teach-generation")
        if previous is not None:
            previous.stop()  # a new picture replaces one still coming
        st.session_state["teach-generation"] = StreamReader(
            request, expected_step_s=lesson_store().pace.expect(request), client=client
        )
        stop_when_tab_closes(st.session_state["teach-generation"])
    generation: StreamReader | None = st.session_state.get("teach-generation")
    if generation is not None:
        ended = follow_live(generation, st.empty(), 256)
        run = generation.trajectory
        if ended.phase == Phase.DONE and run.image is not None:
            look, final = st.columns([3, 1])
            with look:
                play_trajectory(run, key="teach-player", width=160)
            final.image(
                enlarge(run.image, 256),
                caption=_("“{prompt}”, seed {seed}").format(prompt=plain(run.request.prompt), seed=run.request.seed),
                alt=_("the decoded image of “{prompt}”, seed {seed}").format(
                    prompt=plain(run.request.prompt, "text"), seed=run.request.seed
                ),
            )  # fmt: skip
            st.caption(_(PREVIEW_NOTE))
    if client is get_client():  # the other pages paint with this model too
        st.markdown(
            _(
                "Every page now paints your class's prompts that use “{word}” with your class's own model "
                "(prompts without it are painted by Shapes itself, as before). Try it with other colours and places "
                "in the **{playground}**; in lesson **{lesson7}**, type a prompt with “{word}” to see where the word "
                "paints; in lesson **{lesson8}**, switch from “{word}” to another shape part-way and see what stays."
            ).format(
                word=plain(word), playground=_("Playground"), lesson7=_("7. Which word paints where"),
                lesson8=_("8. When does the picture decide?"),
            )
        )  # fmt: skip
    else:
        st.markdown(
            _(
                "Only Shapes knows “{word}”, and only your class's copy of it: try other colours and places here. "
                "The other lessons and the Playground use this server's own model, which was not taught the word."
            ).format(word=plain(word))
        )
