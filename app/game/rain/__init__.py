"""The energy rain: a short game whose balls and reward the server decides."""
