"""`alpaca-train serve`: an OpenAI-compatible server and web chat for a checkpoint, with a content filter,
a watermark on every generated token, and user flags that become a dataset revision."""
