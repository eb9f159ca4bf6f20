import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_terminal_summary(terminalreporter):
    """The zoo's table (``test_zoo.py``) after the run; into ``$MASKSUB_ZOO_TABLE`` too, when set."""
    import sys

    zoo = sys.modules.get("test_zoo")
    if zoo is None or not zoo.ROWS:
        return
    lines = zoo.zoo_table()
    terminalreporter.write_line(f"\n{zoo.table_title()}")
    for line in lines:
        terminalreporter.write_line(line)
    if os.environ.get("MASKSUB_ZOO_TABLE"):
        with open(os.environ["MASKSUB_ZOO_TABLE"], "w") as out:
            out.write("\n".join([zoo.table_title(), "", *lines, ""]))
