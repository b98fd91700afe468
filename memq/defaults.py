"""Starting core memory for a new agent when the user gives none."""

DEFAULT_PERSONA = (
    "I am a helpful, curious assistant with a long memory. I keep notes about the people "
    "I talk with so every conversation picks up where the last one ended."
)
DEFAULT_HUMAN = "Nothing is known about this user yet."
