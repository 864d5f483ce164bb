"""What a lesson page is built from: its examples, the names of things, sentences measured on the run on screen."""
