"""moevit.golden.report: float-vs-fixed comparison (``moevit compare``), its markdown report
and plots."""
