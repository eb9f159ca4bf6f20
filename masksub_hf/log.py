"""The package's logger, ``masksub_hf``. Its few lines (what ``auto`` chose, the engine, how the main loss is read)
reach a plain Python session's stderr at INFO, as transformers' warnings do without any set-up; where the
application configures logging (the scripts, pytest, ``logging.basicConfig``) they go through its handlers alone."""

import logging

LOGGER_NAME = "masksub_hf"


class UnlessConfigured(logging.StreamHandler):
    """Writes a record only where nothing else would: the root logger has no handler."""

    def emit(self, record):
        if not logging.getLogger().handlers:
            super().emit(record)


def library_logger():
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, UnlessConfigured) for handler in logger.handlers):
        handler = UnlessConfigured()
        handler.setFormatter(logging.Formatter("[masksub_hf] %(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger
