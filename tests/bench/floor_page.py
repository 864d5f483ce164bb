"""The floor under a lesson's opening: the smallest Streamlit page that shows a picture, for the same run.

`streamlit run tests/bench/floor_page.py` draws a heading, a line of text and one
64-pixel picture: no lesson, no player, no chart, no class banner. What a class of
browsers takes to open it is what Streamlit and Chromium themselves take on the
machine; the class-of-browsers benchmark opens it the same way as lesson 3, in the
same run, and reports the lesson against it.
"""

import numpy as np
import streamlit as st

st.title("The floor")
st.write("The smallest page with a picture.")
st.image(np.full((64, 64, 3), (200, 40, 40), dtype=np.uint8), caption="a red square")
