"""The class gallery: pictures classmates shared and the teacher approved, newest first, each opening in the player."""

import streamlit as st

from frontend.client import StudentError, get_client
from frontend.drawing.look import alt_text
from frontend.drawing.views import guarded, plain
from frontend.language import _, number
from frontend.material.labels import scheduler_names
from frontend.player import play_trajectory
from frontend.stream.load import load
from frontend.together.student_side import share_to_class
from services.common.api import pb

COLUMNS = 4


def settings_line(item: pb.GalleryItem, schedulers: dict[str, str]) -> str:
    """Who made it and how; the scheduler by the name the Playground shows ("DPM-Solver++", not "dpm_solver_pp")."""
    request = item.request
    scheduler = schedulers.get(request.scheduler, request.scheduler)
    return _("by {name} · seed {seed} · {steps} steps · guidance {guidance} · {scheduler}").format(
        name=plain(item.student_name or _("a classmate")), seed=request.seed, steps=request.num_inference_steps,
        guidance=number(request.guidance_scale), scheduler=plain(scheduler),
    )  # fmt: skip


def open_item(item_id: str) -> None:
    st.session_state["gallery-open"] = item_id


st.title(_("Class gallery"))
mine = st.session_state.get("result")  # the Playground's latest picture
if mine is not None and getattr(mine, "image", None) is not None:
    with st.expander(_("Share your latest Playground picture"), expanded=False):
        st.image(mine.image, width=128, alt=alt_text(_("your latest picture"), mine.request.prompt,
                                                     _("seed {seed}").format(seed=mine.request.seed)))  # fmt: skip
        st.markdown(_("“{prompt}”, seed {seed}").format(prompt=plain(mine.request.prompt), seed=mine.request.seed))
        share_to_class(mine, key="gallery-share")

items = guarded(get_client().gallery)
if items is None:
    st.stop()
if not items:
    st.info(_("Nothing in the gallery yet. Make a picture in the Playground and share it with the class."))
    st.stop()
try:
    schedulers = scheduler_names(get_client().model_info())
except StudentError:
    schedulers = {}  # the ids then: a name is a help, never a reason to stop the page

chosen = next((item for item in items if item.id == st.session_state.get("gallery-open")), None)
if chosen is not None:
    st.subheader(f"“{plain(chosen.request.prompt)}”")
    st.caption(settings_line(chosen, schedulers))
    run = guarded(lambda: load(chosen.request))
    if run is not None:
        play_trajectory(run, key=f"gallery-player-{chosen.id}", width=200)
    st.button(_("Close the player"), on_click=open_item, args=("",))

for start in range(0, len(items), COLUMNS):
    for column, item in zip(st.columns(COLUMNS), items[start : start + COLUMNS], strict=False):
        with column.container(border=True):
            st.image(item.picture.data, width="stretch", alt=alt_text(
                _("a shared picture"), item.request.prompt,
                _("by {name}").format(name=item.student_name or _("a classmate"))))  # fmt: skip
            st.markdown(f"“{plain(item.request.prompt)}”")
            st.caption(settings_line(item, schedulers))
            st.button(_("Open in the player"), key=f"gallery-open-{item.id}", on_click=open_item, args=(item.id,))
