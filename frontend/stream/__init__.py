"""A generation as the pages use it: decoded (wire), read by a thread (reader), kept for the process (store).

A page opens a lesson's trajectory with `load.load`, or reads the Playground's own
stream with a `reader.StreamReader`, and waits on it with `waiting.follow`;
`progress` is where a stream stands, `tabs` stops a closed tab's streams.
"""
