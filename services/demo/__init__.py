"""Demo strategies: user code on the SDK, trading the paper venue so `make run` shows the whole path."""
