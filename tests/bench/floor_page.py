"""The floor under a lesson's opening: the smallest Streamlit app that shows a picture, for the same run.

`streamlit run tests/bench/floor_page.py` has two pages in its menu, as the lessons
do: a start page with a heading and a line of text, and "The picture" with a heading
and one 64-pixel picture. No lesson, no player, no chart, no class banner. What a
class of browsers takes to open it (from a fresh browser, or with a click in the
menu from the start page) is what Streamlit and Chromium themselves take on the
machine; the class-of-browsers benchmark opens it the same ways as lesson 3, in the
same run, and reports the lesson against it.
"""

import numpy as np
import streamlit as st


def start() -> None:
    st.title("The floor")
    st.write("The start page.")


def picture() -> None:
    st.title("The picture")
    st.image(np.full((64, 64, 3), (200, 40, 40), dtype=np.uint8), caption="a red square")


st.navigation([st.Page(start, title="Start", default=True), st.Page(picture, title="The picture")]).run()
