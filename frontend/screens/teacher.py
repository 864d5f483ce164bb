"""The teacher's page: who is generating, the queue, the GPU and the cache; pause, clear, precompute.

Only the teacher code opens it. Students' names are shown, their prompts only
when the teacher switches them on.
"""

from __future__ import annotations

import hmac
import math
from datetime import datetime

import streamlit as st

from frontend.access.browser_id import remember_browser
from frontend.access.guard import record_try, wait_before_trying
from frontend.access.signin import TOO_MANY_TRIES
from frontend.access.transport import require_private_connection
from frontend.client import get_client
from frontend.drawing.views import guarded, plain, said
from frontend.language import N_, _, clock, number
from frontend.settings import FrontendSettings
from frontend.together.student_side import class_state
from frontend.together.teach_side import teach_a_word
from frontend.together.teacher_side import pictures_per_call, served_without_computing, teach_together
from services.common.api import pb
from services.common.i18n import LANGUAGES, SOURCE_LANGUAGE

TEACHER_PAGE_OFF = N_("The teacher's page is off on this server: set CLASSROOM_TEACHER_CODE to turn it on.")
WRONG_TEACHER_CODE = N_("This page is for the teacher, and that teacher code is not right.")

settings = FrontendSettings()
st.title(_("Teacher"))
if not settings.teacher_code:
    st.info(_(TEACHER_PAGE_OFF), icon=":material/lock:")
    st.stop()
require_private_connection()  # HTTPS or the server itself: the teacher code never crosses the network readable
# The guard counts wrong codes per browser: without its cookie a reload would start a new count, and the
# teacher's own browser would not be known the next time a script fills the address's window.
remember_browser()

if not st.session_state.get("teacher_code"):
    st.markdown(_("Type the teacher code to see the class and control the image server."))
    with st.form("teacher-sign-in"):
        typed = st.text_input(_("Teacher code"), type="password")
        opened = st.form_submit_button(_("Open"), type="primary")
    if opened:
        wait = wait_before_trying("teacher")
        if wait > 0:
            st.error(_(TOO_MANY_TRIES).format(seconds=math.ceil(wait)), icon=":material/lock:")
            st.stop()
        right = hmac.compare_digest(typed.strip().encode(), settings.teacher_code.encode())
        record_try("teacher", right)
        if right:
            st.session_state.teacher_code = typed.strip()
            st.rerun()
        st.error(_(WRONG_TEACHER_CODE), icon=":material/lock:")
    st.stop()

code: str = st.session_state.teacher_code
client = get_client()
if settings.class_code:  # made at the first start unless set: the students need it to sign in
    st.text(_("Class code for students: {code}").format(code=settings.class_code))


def _say(message: str) -> None:
    """A toast for the teacher, shown by the dashboard as it redraws after the click."""
    st.session_state.teacher_said = message


def _class_language() -> None:
    """The class's language (the service keeps it for every replica); each student's own pick still wins."""
    picked = st.session_state["teacher-class-language"]
    if guarded(lambda: client.set_class_language(code, picked)) is not None:
        _say(_("The class's pages now speak {language}, unless a student picks another.").format(
            language=LANGUAGES[picked]))  # fmt: skip


languages = list(LANGUAGES)
heard = class_state().language or SOURCE_LANGUAGE
st.selectbox(
    _("The class's language"), languages, index=languages.index(heard) if heard in languages else 0,
    format_func=LANGUAGES.__getitem__, key="teacher-class-language", on_change=_class_language,
    help=_("Every student's page speaks it, unless the student picks another language in the sidebar."),
)  # fmt: skip
show_prompts = st.toggle(_("Show the prompts"), value=False, help=_("Off: you see names only."))


# The buttons act in callbacks, before the dashboard redraws: what it then shows already includes the change.
def _pause(paused: bool) -> None:
    if guarded(lambda: client.set_paused(code, paused)) is not None:
        _say(_("Generation paused.") if paused else _("Generation resumed."))


def _clear() -> None:
    cleared = guarded(lambda: client.clear_queue(code))
    if cleared is not None:
        # One sentence for any count, as tests/frontend/test_teacher_live.py reads it.
        _say(_("Cleared {count} waiting picture(s); their students were told.").format(count=cleared))


def _precompute() -> None:
    if guarded(lambda: client.precompute_lessons(code)) is not None:
        _say(_("Precomputing the lessons: the progress shows below."))


def _remove(class_name: str, name: str, let_back: bool) -> None:
    if guarded(lambda: client.remove_student(code, class_name, name, let_back)) is not None:
        shown = plain(name)  # a toast reads markdown: a name never becomes a link or an image
        back, removed = _("{name} may sign in again."), _("Removed {name}: their tab is signed out.")
        _say((back if let_back else removed).format(name=shown))


def _students(room: pb.GetClassroomResponse) -> None:
    """Who is signed in (one live tab per name), each with a Remove button; removed names can come back."""
    st.subheader(_("Signed in"))
    live = [student for student in room.students if not student.removed]
    if not live:
        st.caption(_("Nobody is signed in with a name (a class code makes students sign in)."))
    for student in live:
        name_column, seen_column, button_column = st.columns([3, 2, 1])
        label = f"{student.name} ({student.class_name})" if student.class_name else student.name
        name_column.text(plain(label, "text"))  # as typed, never as markdown
        seen_column.caption(_("seen {seconds} s ago").format(seconds=round(student.seconds_since_seen)))
        button_column.button(
            _("Remove"), key=f"teacher-remove-{student.class_name}-{student.name}", on_click=_remove,
            args=(student.class_name, student.name, False),
            help=_("Signs this student out and stops their picture. Their browser stays out, under any name, "
                   "until you let them back."),
        )  # fmt: skip
    for student in (s for s in room.students if s.removed):
        name_column, button_column = st.columns([5, 1])
        name_column.text(plain(_("{name}: removed").format(name=student.name), "text"))
        button_column.button(
            _("Let back"), key=f"teacher-let-back-{student.class_name}-{student.name}", on_click=_remove,
            args=(student.class_name, student.name, True),
        )  # fmt: skip


def _controls(room: pb.GetClassroomResponse) -> None:
    """The teacher's buttons, drawn from the same reading of the class as the numbers beside them."""
    pause_column, clear_column, precompute_column = st.columns(3)
    pause_column.button(
        _("Resume generation") if room.paused else _("Pause generation"),
        type="primary",
        key="teacher-pause",
        on_click=_pause,
        args=(not room.paused,),
    )
    waiting = sum(not job.running for job in room.jobs)
    clear_column.button(_("Clear the queue"), disabled=not waiting, key="teacher-clear", on_click=_clear)
    precompute_column.button(
        _("Precompute the lessons"), disabled=room.precompute.running, key="teacher-precompute", on_click=_precompute
    )


def _table(title: str, empty: str, rows: list[dict[str, object]]) -> None:
    st.subheader(title)
    if rows:
        st.dataframe(rows, hide_index=True, use_container_width=True)
    else:
        st.caption(empty)


def _live(room: pb.GetClassroomResponse) -> None:
    if room.paused:
        st.warning(_("Generation is paused. Lessons and cached pictures still open."), icon=":material/pause:")
    stats = room.stats
    running = sum(job.running for job in room.jobs)
    a, b, c, d = st.columns(4)
    a.metric(_("Generating now"), running)
    b.metric(_("Waiting"), len(room.jobs) - running)
    c.metric(*served_without_computing(room), help=_("Cache hits and joined identical requests."))
    d.metric(_("Blocked prompts"), stats.blocked_prompts)
    e, f, g, h = st.columns(4)
    # "cpu (no GPU on this server)" did not fit its column and read "cpu (no GP…": the note goes in the label.
    e.metric(_("Device") if room.gpu_memory_total_bytes else _("Device (no GPU on this server)"), room.device)
    f.metric(_("Pictures per UNet call"), pictures_per_call(room),
             help=_("At most {count}.").format(count=room.max_batch_size))  # fmt: skip
    if room.gpu_memory_total_bytes:
        used, total = room.gpu_memory_used_bytes / 2**30, room.gpu_memory_total_bytes / 2**30
        g.metric(_("GPU memory"), f"{number(used, digits=1)} / {number(total, digits=0)} GB")
    h.metric(_("Finished"), stats.generations_completed,
             help=_("{count} failed").format(count=stats.generations_failed))  # fmt: skip

    has_classes = any(job.class_name for job in room.jobs)
    _table(
        _("The queue"),
        _("Nobody is generating right now."),
        [
            {
                _("student"): plain(job.student_name, "text") or _("(no name)"),
                **({_("class"): plain(job.class_name, "text")} if has_classes else {}),
                _("state"): _("generating") if job.running else _("waiting, #{position}").format(position=job.position),
                _("step"): _("{done} of {total}").format(done=job.steps_done, total=job.total_steps)
                if job.running
                else "",
                _("seconds"): round(job.seconds),
                **({_("prompt"): plain(job.prompt, "text")} if show_prompts else {}),
            }
            for job in room.jobs
        ],
    )
    _students(room)
    _table(
        _("Blocked attempts"),
        _("None so far."),
        [
            {
                _("student"): plain(attempt.student_name, "text") or _("(no name)"),
                _("when"): clock(datetime.fromtimestamp(attempt.unix_time)),
                **({_("prompt"): plain(attempt.prompt, "text")} if show_prompts else {}),
            }
            for attempt in room.blocked
        ],
    )

    progress = room.precompute
    if progress.running or progress.total or progress.skipped:
        st.subheader(_("Lesson precompute"))
        done = progress.rendered + progress.failed
        if progress.running:
            rendered = _("{done} of {total} rendered").format(done=done, total=progress.total)
            st.progress(done / progress.total if progress.total else 0.0, text=rendered)
        else:
            st.caption(_("Done: {rendered} rendered, {skipped} already cached, {failed} failed.").format(
                rendered=progress.rendered, skipped=progress.skipped, failed=progress.failed))  # fmt: skip
        if progress.last_error:  # may quote an example's prompt
            st.caption(said(_("Last failure: {error}").format(error=progress.last_error)))


@st.fragment(run_every=3)
def live_view() -> None:
    """The buttons and the numbers, refreshed together every few seconds without rerunning the page."""
    said = st.session_state.get("teacher_said")
    if said:
        # Forgotten only once the toast is sent: a click that stops this run before then (Streamlit stops a run at
        # its next element) leaves it to the next run.
        st.toast(said)
        del st.session_state["teacher_said"]
        st.session_state.teacher_last_said = said
    if last := st.session_state.get("teacher_last_said"):
        # A toast leaves after a few seconds, and one sent just before the next run starts may never be drawn:
        # the last confirmation also stays on the dashboard, redrawn by every run, until the next one replaces it.
        st.caption(last)
    fresh = guarded(lambda: client.classroom(code, show_prompts))
    if fresh is not None:
        _controls(fresh)
        _live(fresh)


live_view()
teach_together()  # lead the class, quick checks, the class gallery and map
teach_a_word()  # lesson 10: the class's drawings, the word, Teach, Stop, Forget
