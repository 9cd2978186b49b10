"""The one error type users see: a single line naming the file/line/field and what was expected."""


class RfedgeError(Exception):
    """A user-facing error. The CLI prints ``rfedge: error: <message>`` and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str, *, path=None, line=None, field=None):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)
