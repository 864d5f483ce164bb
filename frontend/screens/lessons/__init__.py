"""The lesson pages, one file each, run by st.navigation from frontend/app.py."""
