"""Diffusion Classroom's entry page: `streamlit run frontend/app.py`."""

import streamlit as st

st.set_page_config(page_title="Diffusion Classroom", page_icon="🎨", layout="wide")

pages = [
    st.Page("lessons/home.py", title="Welcome", icon="🏫", default=True),
    st.Page("lessons/pipeline.py", title="1. The whole pipeline", icon="🧭"),
    st.Page("lessons/words.py", title="2. Words to numbers", icon="🔤"),
    st.Page("lessons/noise_to_image.py", title="3. From noise to image", icon="🌫️"),
    st.Page("lessons/guidance.py", title="4. Guidance", icon="🧲"),
    st.Page("lessons/change_one_word.py", title="5. Change one word", icon="✏️"),
    st.Page("lessons/seeds_schedulers.py", title="6. Seeds and schedulers", icon="🎲"),
    st.Page("lessons/playground.py", title="Playground", icon="🧪"),
]
st.navigation(pages).run()
