"""Reviving a friend's expired energy: the owner gets it back as a new ball, the reviver a share."""
