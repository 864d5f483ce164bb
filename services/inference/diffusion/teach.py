"""(temporary) re-export of the training of a class's word, until it moves here."""

from services.shapes.teach import TaughtWord, TeachConfig, TeachProgress, apply, check_word, teach
from services.shapes.teach_data import Drawing

__all__ = ["Drawing", "TaughtWord", "TeachConfig", "TeachProgress", "apply", "check_word", "teach"]
