"""``python -m leanrec.cli``: the same app as the ``leanrec`` script."""

from . import app

app(prog_name="leanrec")
