"""Teaching together: the students' side (the class's state, the banner, the quick check) and the teacher's."""
