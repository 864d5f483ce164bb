"""Teaching together: present mode, quick checks, the class gallery and the class map."""
