"""Numbers -> report: the tables, figures and the one-page report of a study."""


def __getattr__(name: str):
    # mslesion.report was the report builder before issue 12; its names now live in mslesion.report.build.
    from mslesion.compat import moved_attribute

    return moved_attribute(__name__, name)
