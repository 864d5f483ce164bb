"""The Streamlit front end: the lessons a student opens in the browser."""
