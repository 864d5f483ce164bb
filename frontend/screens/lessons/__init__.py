"""The nine lessons, one page each, in the menu's order (frontend/app.py runs them with st.navigation)."""
