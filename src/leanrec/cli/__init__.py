"""The command line: noun groups with verbs, assembled here.

::

    leanrec demo                                     the main job
    leanrec data     fetch | info | synth
    leanrec model    train | recommend | compare | ramp
    leanrec encoder  export | distill | finetune
    leanrec cost     profile | bench | plan
    leanrec batch    encode | recommend | index | plan
    leanrec service  serve | import | load

Each group is one module that imports only :mod:`leanrec.cli.common` and the library (so
there is no import circle; ``tests/test_cli_layout.py`` checks it); this module imports them
all and adds the old spellings of :data:`RENAMED` as hidden commands for one release: each
says its new name on stderr and runs the new command's own function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from . import batch, common, cost, data, demo, encoder, model, service

app = common.Group(help="leanrec: language-model recommendations at a measured fraction of the hardware cost.")
app.command("demo")(demo.demo)
GROUPS = {"data": data.app, "model": model.app, "encoder": encoder.app, "cost": cost.app, "batch": batch.app,
          "service": service.app}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


class Renamed(NamedTuple):
    """An old command name's new one and the new command's function; ``positional``: options of
    the new command the old one took as trailing positional arguments; ``options``: the
    parameters whose flag was spelled differently (parameter -> old flag)."""

    new: str
    func: Callable
    positional: tuple[str, ...] = ()
    options: Mapping[str, str] = MappingProxyType({})


#: old spelling -> new one. ``leanrec cost OPTIONS`` (now ``cost profile``) is the cost group's
#: own default; ``data fetch|info NAME``, ``data synth OUT`` and ``encoder export OUT --model M``
#: keep their name, with hidden old arguments (see those commands).
RENAMED = {
    "recommend": Renamed("model recommend", model.recommend),
    "compare": Renamed("model compare", model.compare),
    "train": Renamed("model train", model.train),
    "train encoder": Renamed("encoder finetune", encoder.finetune, options={"encoder": "--model"}),
    "encoder distill-layers": Renamed("encoder distill", encoder.distill),
    "bench": Renamed("cost bench", cost.bench),
    "plan": Renamed("cost plan", cost.plan),
    "encode": Renamed("batch encode", batch.encode, positional=("out",)),
    "recommend-all": Renamed("batch recommend", batch.recommend, positional=("out",)),
    "index-shards": Renamed("batch index", batch.index, positional=("out",)),
    "plan-job": Renamed("batch plan", batch.plan),
    "serve": Renamed("service serve", service.serve),
    "store import": Renamed("service import", service.import_, positional=("dataset",)),
    "store load": Renamed("service load", service.load),
}

#: the old groups that are gone; ``train`` was also a command (``train --model M --out DIR``),
#: so its group runs that one, renamed ``fit`` here, when no subcommand is named.
_OLD_GROUPS = {
    "train": common.Group(help="Old names: `leanrec train --model M --out DIR` is now `leanrec model train`, "
                               "`leanrec train encoder` is now `leanrec encoder finetune`.",
                          cls=common.group_with_default("fit", on_no_args=True)),
    "store": common.Group(help="Old names: `leanrec store import` is now `leanrec service import`, "
                               "`leanrec store load` is now `leanrec service load`."),
}


def _register_old_spellings() -> None:
    for old, r in RENAMED.items():
        parent, _, name = old.rpartition(" ")
        if old in _OLD_GROUPS:  # the old group's own command
            parent, name = old, "fit"
        where = app if not parent else _OLD_GROUPS.get(parent) or GROUPS[parent]
        common.alias(where, name, r.func, old=old, new=r.new, positional=r.positional, options=r.options)
    for name, group in _OLD_GROUPS.items():
        app.add_typer(group, name=name, hidden=True)


_register_old_spellings()

__all__ = ["RENAMED", "app"]
