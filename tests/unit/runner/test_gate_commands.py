"""A peon's ``toolbox.commands``: the runner's commands reach the task, whether or not it has looked yet,
and the gate's EOF tells the peon that the Overlord that launched it has gone."""

from __future__ import annotations

from multiprocessing import Pipe

from overlord.runner.peon import GateCommands


def test_a_command_sent_after_the_launch_reaches_the_task() -> None:
    runner_end, peon_end = Pipe(duplex=True)
    commands = GateCommands(peon_end)
    runner_end.send({"command": {"type": "pause"}})
    assert commands.get(timeout=10) == {"type": "pause"}
    runner_end.send({"command": {"type": "resume"}})
    assert commands.get(timeout=10) == {"type": "resume"}
    assert not commands.runner_gone()
    runner_end.close()
    commands._listener.join(10)  # type: ignore[union-attr]  # the listener ends at the EOF
    assert commands.runner_gone()


def test_without_a_look_at_the_commands_the_gate_is_read_at_the_end() -> None:
    runner_end, peon_end = Pipe(duplex=True)
    commands = GateCommands(peon_end)
    runner_end.send({"command": {"type": "pause"}})
    assert not commands.runner_gone()  # a command waiting is not an EOF
    runner_end.close()
    assert commands.runner_gone()
    assert commands._listener is None  # no thread was started for it
    assert commands.get_nowait() == {"type": "pause"}  # what was read on the way is kept for the task


def test_a_peon_without_a_gate_has_no_runner() -> None:
    assert GateCommands(None).runner_gone()
