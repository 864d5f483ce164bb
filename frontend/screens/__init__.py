"""Every page of the menu, one file each, run by st.navigation from frontend/app.py (the lessons in lessons/).

A page's address is its file name (`/playground`, `/follow`): teachers bookmark them.
"""
