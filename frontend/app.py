"""Diffusion Classroom's entry page: `streamlit run frontend/app.py`."""

import streamlit as st

from frontend.access.signin import keep_my_name, name_heartbeat, sign_in_page, signed_in
from frontend.drawing.look import page_look
from frontend.drawing.views import preload_lesson_libraries
from frontend.language import _, hear_class_language, language_picker
from frontend.settings import FrontendSettings
from frontend.together.student_side import class_banner, class_state

# An emoji, not a Material icon: the browser would fetch that one from fonts.gstatic.com (a third party).
st.set_page_config(page_title=_("Diffusion Classroom"), page_icon="🎨", layout="wide")
page_look()  # contrast, focus rings, calm motion: on every page, the sign-in page too
preload_lesson_libraries()  # the first lesson a student opens does not wait for them
hear_class_language(class_state().language)  # the teacher's choice; a student's own pick wins over it
language_picker()  # in the sidebar of every page, the sign-in page too

pages = [
    st.Page("screens/home.py", title=_("Welcome"), icon=":material/school:", default=True),
    st.Page("screens/lessons/pipeline.py", title=_("1. The whole pipeline"), icon=":material/account_tree:"),
    st.Page("screens/lessons/words.py", title=_("2. Words to numbers"), icon=":material/text_fields:"),
    st.Page("screens/lessons/noise_to_image.py", title=_("3. From noise to image"), icon=":material/blur_on:"),
    st.Page("screens/lessons/guidance.py", title=_("4. Guidance"), icon=":material/tune:"),
    st.Page("screens/lessons/change_one_word.py", title=_("5. Change one word"), icon=":material/edit:"),
    st.Page("screens/lessons/seeds_schedulers.py", title=_("6. Seeds and schedulers"), icon=":material/casino:"),
    st.Page("screens/lessons/attention.py", title=_("7. Which word paints where"), icon=":material/highlight:"),
    st.Page("screens/lessons/branch.py", title=_("8. When does the picture decide?"), icon=":material/call_split:"),
    st.Page("screens/lessons/learned_from.py", title=_("9. What it learned from"), icon=":material/dataset:"),
    st.Page("screens/lessons/teach_word.py", title=_("10. Teach it a new word"), icon=":material/draw:"),
    st.Page("screens/playground.py", title=_("Playground"), icon=":material/science:"),
    st.Page("screens/model.py", title=_("The model"), icon=":material/memory:"),
    st.Page("screens/follow.py", title=_("Follow along"), icon=":material/co_present:"),
    st.Page("screens/gallery.py", title=_("Class gallery"), icon=":material/photo_library:"),
]
# The teacher's page asks for the teacher code itself, and refuses anyone without it.
teacher = st.Page("screens/teacher.py", title=_("Teacher"), icon=":material/admin_panel_settings:")
settings = FrontendSettings()
keep_my_name()  # signed in: renew this tab's hold on its name (signs the tab out if it lost it)
if not signed_in(settings):
    pages = [st.Page(sign_in_page, title=_("Sign in"), icon=":material/login:")]
elif settings.class_code:
    name_heartbeat()
if settings.teacher_code:
    pages.append(teacher)
# Every page listed: with the language picker in the sidebar, Streamlit would otherwise fold the menu after 10.
page = st.navigation(pages, expanded=True)
st.set_page_config(page_title=f"{page.title} · {_('Diffusion Classroom')}")  # each page its own title (WCAG 2.4.2)
if signed_in(settings):
    class_banner(on_follow_page=page.url_path == "follow")  # when the teacher leads, go along; a quick check
page.run()
