"""active_config: a loader's parameters read once while it is asked again, handed out as copies."""

from __future__ import annotations

from dermascreen.pipelines import active_config


class CountingLoader(dict):
    """A config loader's mapping interface, counting the reads of ``parameters``."""

    def __init__(self, parameters: dict):
        super().__init__(parameters=parameters)
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return super().__getitem__(key)


def test_a_runs_parameters_are_read_once_and_handed_out_as_copies():
    loader = CountingLoader({"phase1": {"runs": ["CNN_v1"]}})
    active_config.use(loader)
    try:
        first = active_config.parameters()
        first["phase1"]["runs"].append("changed by a caller")
        assert active_config.parameters() == {"phase1": {"runs": ["CNN_v1"]}}
        assert loader.reads == 1

        other = CountingLoader({"phase1": {"runs": ["VGG_v1"]}})  # the next run's loader
        active_config.use(other)
        assert active_config.parameters() == {"phase1": {"runs": ["VGG_v1"]}} and other.reads == 1
        assert active_config.read(loader) == {"phase1": {"runs": ["CNN_v1"]}}  # a hook holding its own loader
        assert active_config.read(loader) == {"phase1": {"runs": ["CNN_v1"]}} and loader.reads == 2
    finally:
        active_config.use(None)
