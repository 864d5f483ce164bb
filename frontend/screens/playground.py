"""The Playground: any prompt and settings, streamed step by step, with a stop button and downloads.

A prompt with the word the class taught Shapes (lesson 10) is painted by the class's own Shapes
model: the server's own where that is Shapes, else the Shapes service running beside it
(CLASSROOM_SHAPES_ADDR), and the page says so; every other prompt goes to the server's own model.
"""

import io
import re

import numpy as np
import streamlit as st
from PIL import Image

from frontend.client import (
    ClassroomClient,
    StudentError,
    client_for,
    get_client,
    shapes_beside,
    shapes_client,
    student_id,
)
from frontend.drawing.look import alt_text
from frontend.drawing.views import PREVIEW_NOTE, enlarge, guarded, plain
from frontend.language import N_, _, number
from frontend.material.labels import SHAPES_FAMILY, example_prompts, unlearned_sentence, unlearned_words
from frontend.material.live import follow_live
from frontend.player import play_trajectory
from frontend.stream.load import request_with
from frontend.stream.progress import Phase
from frontend.stream.reader import StreamReader
from frontend.stream.store import lesson_store
from frontend.stream.tabs import stop_when_tab_closes
from frontend.stream.wire import TrajectoryView
from frontend.together.student_side import share_to_class
from services.common.api import pb
from services.common.include_mask import Probe

SAFETY_NOTE = N_("The safety filter flagged this picture, so it is shown blurred. Try a different prompt.")
PROMPT_KEY = "playground-prompt"
HEADING_CHARS = 48  # the heading names the prompt in short; the whole prompt is written under it


def gif(run: TrajectoryView) -> bytes:
    """The denoising as an animated GIF: the model's guess at every step, then the decoded image."""
    size = run.image.shape[1]
    frames = [Image.fromarray(enlarge(s.x0_preview, size)) for s in run.steps if s.x0_preview is not None]
    frames.append(Image.fromarray(run.image))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return buffer.getvalue()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def short(prompt: str) -> str:
    words = " ".join(prompt.split())
    return words if len(words) <= HEADING_CHARS else words[: HEADING_CHARS - 1].rstrip() + "…"


def cut_long_prompt(limit: int) -> None:
    """Before the run: a pasted prompt over the limit is cut to it (the box keeps the part that is used)."""
    typed = st.session_state.get(PROMPT_KEY, "")
    if len(typed) > limit:
        st.session_state[PROMPT_KEY] = typed[:limit]
        st.session_state["playground-cut"] = len(typed)


@st.cache_data(max_entries=1024, show_spinner=False)
def never_learned(prompt: str, address: str, revision: str, taught: str, _student: str) -> list[str]:
    """The prompt's words the model at `address` never learned, kept per prompt, model and the class's own word."""
    return unlearned_words(client_for(address).tokenize(prompt, _student))


@st.cache_data(ttl=10, max_entries=64, show_spinner=False)
def class_word(address: str, classroom: str, _student: str) -> str:
    """The word this class taught its Shapes model at `address` (lesson 10), or "": asked again at most every 10 s."""
    try:
        return client_for(address).teaching(_student).taught_word
    except StudentError:
        return ""


def uses_word(prompt: str, word: str) -> bool:
    """Whether the prompt has `word` as one of its words (runs of letters: "heart," is "heart")."""
    return bool(word) and word.lower() in re.findall(r"[a-z]+", prompt.lower())


def class_shapes(info: pb.GetModelInfoResponse) -> ClassroomClient | None:
    """The service that paints the class's taught word: the server's own if it runs Shapes, else Shapes beside it."""
    if info.model_family == SHAPES_FAMILY:
        return get_client()
    return shapes_client() if shapes_beside() else None


def use_example(key: str) -> None:
    """An example prompt picked from the menu goes into the prompt box."""
    if st.session_state.get(key):
        st.session_state[PROMPT_KEY] = st.session_state[key]
    st.session_state[key] = None


def stop() -> None:
    generation = st.session_state.get("playground-generation")
    if generation is not None:
        generation.stop()


st.title(_("Playground"))
info = guarded(get_client().model_info)
if info is None:
    st.stop()
limits = info.limits
examples = example_prompts(info)
st.session_state.setdefault(PROMPT_KEY, examples[0])

# No form on this page: the warning below follows the box as the student types (on Ctrl+Enter or leaving
# it), and a click on Generate straight after typing still counts (a form's submit button lost that click
# to the rerun of a box outside the form, in Chromium).
# No max_chars: the browser would refuse a long paste whole and leave the box as it was.
prompt = st.text_area(
    _("Prompt"), key=PROMPT_KEY, help=_("At most {count} characters.").format(count=number(limits.max_prompt_chars))
)
# Who paints this prompt, and with what model: `paints` is its GetModelInfo (the form below offers
# what that model can paint). Only the class's Shapes model knows the class's word (lesson 10).
painter, paints, taught = get_client(), info, ""
try:
    shapes = class_shapes(info)
    if shapes is not None:
        taught = class_word(shapes.settings.inference_addr, shapes.class_name, student_id())
        if shapes is not painter and uses_word(prompt, taught):
            painter, paints = shapes, shapes.model_info()
    checked = painter.settings.inference_addr, paints.model_revision, taught, student_id()
    unknown = never_learned(prompt, *checked) if prompt.strip() else []
except StudentError:
    unknown = None  # the warning is a help, never a reason to stop the page
main_name = info.model_display_name or _("This model")
model_name = paints.model_display_name or _("This model")
beside_word = taught if painter is not get_client() else ""  # the class's word, painted by Shapes beside
if unknown:
    st.warning(unlearned_sentence(unknown, model_name), icon=":material/help:")
elif unknown is not None and paints.model_family == SHAPES_FAMILY:
    # Where the warning would be: the student sees the words were checked, and the page below does
    # not jump as the warning comes and goes.
    if uses_word(prompt, taught):
        st.success(_("Your class's own model learned every word of this prompt (“{word}” is the word your "
                     "class taught it).").format(word=plain(taught)), icon=":material/check_circle:")  # fmt: skip
    else:
        st.success(
            _("{model} learned every word of this prompt.").format(model=model_name), icon=":material/check_circle:"
        )
if beside_word:
    st.info(
        _(
            "This prompt has “{word}”, the word your class taught its own Shapes model, so that model paints it: "
            "Shapes runs beside {model}, which paints every prompt without “{word}”."
        ).format(word=plain(beside_word), model=main_name),
        icon=":material/school:",
    )
st.selectbox(
    _("Or start from an example it knows every word of"),
    examples,
    index=None,
    key="playground-example",
    placeholder=_("Pick an example prompt"),
    on_change=use_example,
    args=("playground-example",),
)

# Only what the painting model can paint: sizes up to GetModelInfo's limit (Shapes: 128 px), in steps of 64.
form = paints.limits
sizes = [s for s in range(max(form.min_size, 64), form.max_size + 1, 64)]
with st.container(border=True):
    negative = st.text_input(_("Negative prompt (optional)"), "")
    a, b, c = st.columns(3)
    steps = a.slider(_("Steps"), form.min_steps, form.max_steps, min(paints.default_steps, form.max_steps))
    guidance = b.slider(
        _("Guidance scale"), 0.0, float(form.max_guidance_scale), float(paints.default_guidance_scale), 0.5
    )
    display = {s.name: s.display_name for s in paints.schedulers}
    names = list(display)
    scheduler = c.selectbox(_("Scheduler"), names, index=names.index(paints.default_scheduler), format_func=display.get)
    d, e, f = st.columns(3)
    width = d.selectbox(
        _("Width"), sizes, index=sizes.index(paints.default_width) if paints.default_width in sizes else 0
    )
    height = e.selectbox(
        _("Height"), sizes, index=sizes.index(paints.default_height) if paints.default_height in sizes else 0
    )
    seed = f.number_input(_("Seed (empty: a random one)"), 0, int(form.max_seed), value=None, step=1)
    submitted = st.button(_("Generate"), type="primary", on_click=cut_long_prompt, args=(limits.max_prompt_chars,))

native = paints.default_width
st.caption(
    _(
        "Not offered: pictures larger than {size} × {size} pixels, or more than {steps} steps. {model} learned to "
        "paint {native} × {native} pictures; much bigger ones come out as broken patterns, and take far longer."
    ).format(size=form.max_size, steps=form.max_steps, model=model_name, native=native)
)

cut_from = st.session_state.pop("playground-cut", None)
if cut_from is not None:
    st.warning(
        _(
            "Your prompt had {count} characters; prompts may have at most {limit}, so only the first {limit} are "
            "used (the box now holds them)."
        ).format(count=number(cut_from), limit=number(limits.max_prompt_chars)),
        icon=":material/content_cut:",
    )

if submitted:
    request = pb.GenerateRequest(
        prompt=prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
        width=width, height=height, scheduler=scheduler,
    )  # fmt: skip
    if seed is not None:
        request.seed = int(seed)
    request = request_with(request, [Probe.LATENT_PREVIEW, Probe.PREDICTED_X0_PREVIEW])  # and the decoded guess
    stop()  # a new picture replaces one still coming; the last finished one stays until it is done
    st.session_state["playground-generation"] = StreamReader(
        request, expected_step_s=lesson_store().pace.expect(request), client=painter
    )
    # Who paints it, said under the picture: the class's word and the service beside ("" for the main one).
    st.session_state["playground-beside"] = (beside_word, painter.settings.inference_addr if beside_word else "")
    stop_when_tab_closes(st.session_state["playground-generation"])  # a closed tab gives its place back

# The stream's one status: waiting, running, paused, done, stopped, failed or cleared.
generation: StreamReader | None = st.session_state.get("playground-generation")
if generation is not None:
    status, stop_slot = st.empty(), st.empty()
    if not generation.state.snapshot().final:
        stop_slot.button(_("Stop"), on_click=stop)
    ended = follow_live(generation, status, 320)
    stop_slot.empty()
    if ended.phase == Phase.DONE and generation.trajectory.image is not None:
        st.session_state.result = generation.trajectory
        st.session_state["playground-result-beside"] = st.session_state.get("playground-beside", ("", ""))

run = st.session_state.get("result")
if run is not None and run.image is not None:
    st.subheader(_("“{prompt}”, seed {seed}").format(prompt=plain(short(run.request.prompt)), seed=run.request.seed))
    if len(" ".join(run.request.prompt.split())) > HEADING_CHARS:
        st.caption(_("The whole prompt: {prompt}").format(prompt=plain(run.request.prompt)))
    painted_word, painted_by = st.session_state.get("playground-result-beside", ("", ""))
    if painted_word:
        st.caption(
            _(
                "This picture was painted by your class's own Shapes model, the one that learned “{word}”: it runs "
                "beside {model}, which paints the Playground's other prompts."
            ).format(word=plain(painted_word), model=main_name),
        )
    tokens = run.prompt_tokens
    if tokens is not None and tokens.truncated:
        st.warning(
            _(
                "Only {fit} pieces of your prompt fit the text encoder's window of {window} tokens. The model never "
                "saw the rest: **{rest}** ({cut} pieces cut off; Stable Diffusion's own pipeline cuts them too, and "
                "says so only in its log)."
            ).format(
                fit=tokens.max_length - 2,
                window=tokens.max_length,
                rest=plain(tokens.truncated_text),
                cut=len(tokens.truncated_tokens),
            ),
            icon=":material/content_cut:",
        )
    look, final = st.columns([3, 1])
    with look:
        st.markdown(_("**Look back at any step**: play it, or step with the arrow keys."))
        play_trajectory(run, key="playground-player", width=200)
    final.image(run.image, caption=_("the decoded image"), width=256, alt=alt_text(
        _("the decoded image"), run.request.prompt, _("seed {seed}").format(seed=run.request.seed),
        _("{count} steps").format(count=len(run.steps))))  # fmt: skip
    if run.flagged:
        st.warning(_(SAFETY_NOTE), icon=":material/visibility_off:")
    st.caption(PREVIEW_NOTE)
    d, e = st.columns(2)
    d.download_button(_("Download the image (PNG)"), png(run.image), "diffusion-classroom.png", "image/png")
    e.download_button(_("Download the denoising (GIF)"), gif(run), "diffusion-classroom.gif", "image/gif")
    # To the class gallery (the teacher approves it first), through the service that kept the picture.
    share_to_class(run, key="playground-share", client=client_for(painted_by) if painted_by else None)
