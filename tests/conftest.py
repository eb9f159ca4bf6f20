import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def earlier_objects_frozen():
    """Before each test (``helpers.freeze_what_survives``): a collection sees the test's own objects."""
    from helpers import freeze_what_survives  # here: helpers imports transformers, after the variables above

    freeze_what_survives()
    yield


def pytest_terminal_summary(terminalreporter):
    """The zoo's tables (``test_zoo.py``) after the run; into ``$MASKSUB_ZOO_TABLE`` too, when set."""
    import sys

    zoo = sys.modules.get("test_zoo")
    if zoo is None:
        return
    written = []
    for kind, rows in zoo.ROWS.items():
        if rows:
            lines = [zoo.table_title(kind), "", *zoo.zoo_table(kind), ""]
            terminalreporter.write_line("\n" + "\n".join(lines))
            written += lines
    if written and os.environ.get("MASKSUB_ZOO_TABLE"):
        with open(os.environ["MASKSUB_ZOO_TABLE"], "w") as out:
            out.write("\n".join(written))
