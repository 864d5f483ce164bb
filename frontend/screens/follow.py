"""Follow along: the lesson example and step the teacher leads, in the player, and the class map when shown.

The page is drawn once per teacher move: the class banner (a small fragment on
every page) looks at the class's state in this front end's memory twice a
second and reruns the page only when the teacher changed what it shows. The
student may scrub the player on their own; "Back to the teacher's step" puts it
where the teacher is.
"""

import streamlit as st

from frontend.client import get_client
from frontend.drawing.views import guarded, plain
from frontend.language import _
from frontend.player import play_trajectory
from frontend.stream.load import load
from frontend.together.map_chart import draw_class_map
from frontend.together.menu import led_title
from frontend.together.student_side import back_to_the_teacher, class_state, follow_view

st.title(_("Follow along"))
present = class_state().present
st.session_state["follow-drawn"] = follow_view(present)  # the banner above reruns the page when this changes
if not present.leading:
    st.info(
        _("Your teacher is not leading the class right now: pick any lesson from the menu."), icon=":material/info:"
    )
    st.stop()

example = present.example
total = example.num_inference_steps
st.markdown(
    _("**{lesson}**: “{prompt}”, seed {seed}").format(
        lesson=plain(led_title(present)), prompt=plain(example.prompt), seed=example.seed
    )
)
here, back = st.columns([3, 1])
here.info(
    _("Your teacher is on step {step} of {total}.").format(step=present.step, total=total), icon=":material/co_present:"
)
back.button(_("Back to the teacher's step"), on_click=back_to_the_teacher, type="primary")
run = guarded(lambda: load(example, lesson_entry=present.example_id))
if run is None:
    st.stop()
nonce = st.session_state.get("follow-nonce", 0)
play_trajectory(run, key=f"follow-{present.lead_id}-{nonce}", start=present.step, width=200)
st.caption(_("Scrub or play on your own; the button above puts you back where your teacher is."))
if present.show_map:
    st.subheader(_("The class map"))
    class_map = guarded(get_client().class_map)
    if class_map is not None:
        draw_class_map(class_map)
