"""An OTLP exporter wrapper the test scripts share: it counts failed exports."""


class Checked:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *args, **kwargs):
        result = self.inner.export(batch, *args, **kwargs)
        # Result enums differ between signals and SDK versions; all name success SUCCESS.
        if getattr(result, "name", None) != "SUCCESS":
            self.failures += 1
        return result
