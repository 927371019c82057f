"""GoalQueue: admission bound, arrival order, one running goal, withdrawal and closing."""
from __future__ import annotations

from stream_omni_ros.nodes.omni_goals import GoalQueue
from stream_omni_ros.nodes.omni_node import transition_error_to_text


class RecordedGoal:
    """Stands for a goal handle: records when the queue executes it."""

    def __init__(self, name: str, executed: list[str]) -> None:
        self.name, self._executed = name, executed

    def execute(self) -> None:
        """Record the start."""
        self._executed.append(self.name)


def admitted(queue: GoalQueue, executed: list[str], names: str) -> list[RecordedGoal]:
    goals = []
    for name in names:
        assert queue.admit() is None
        goals.append(RecordedGoal(name, executed))
        queue.accepted(goals[-1])
    return goals


def test_goals_run_one_at_a_time_in_arrival_order():
    executed: list[str] = []
    queue = GoalQueue(max_goals=4)
    a, b, c = admitted(queue, executed, "abc")
    assert executed == ["a"]
    queue.finished(a)
    assert executed == ["a", "b"]
    queue.finished(b)
    queue.finished(c)
    assert executed == ["a", "b", "c"] and queue.wait_empty(0)


def test_admission_is_bounded_and_says_why():
    queue = GoalQueue(max_goals=2)
    admitted(queue, [], "ab")
    refusal = queue.admit()
    assert refusal is not None and refusal.key == "queue_full"
    assert "2 goals are waiting or running; expected at most 2" in refusal.message


def test_a_withdrawn_goal_runs_at_once_and_the_others_keep_their_place():
    executed: list[str] = []
    queue = GoalQueue(max_goals=4)
    a, b, c = admitted(queue, executed, "abc")
    assert queue.withdraw(c) and not queue.withdraw(a)  # a runs already: its turn is stopped
    assert executed == ["a", "c"]
    assert queue.was_withdrawn(c) and not queue.was_withdrawn(c) and not queue.was_withdrawn(b)
    queue.finished(c)
    assert executed == ["a", "c"]  # b still waits for a
    queue.finished(a)
    assert executed == ["a", "c", "b"]


def test_closing_ends_every_waiting_goal_and_refuses_new_ones():
    executed: list[str] = []
    queue = GoalQueue(max_goals=4)
    a, b, c = admitted(queue, executed, "abc")
    queue.close("omni_node was deactivated")
    assert executed == ["a", "b", "c"] and queue.closed_reason() == "omni_node was deactivated"
    refusal = queue.admit()
    assert refusal is not None and refusal.key == "inactive"
    assert not queue.wait_empty(0)
    for goal in (a, b, c):
        queue.finished(goal)
    assert queue.wait_empty(0)
    queue.reopen()
    assert queue.admit() is None


def test_transition_errors_name_the_exception_and_its_message():
    missing = ModuleNotFoundError("No module named 'silero_vad'")
    assert transition_error_to_text("configure", missing) == (
        "configure failed: ModuleNotFoundError: No module named 'silero_vad' (a required "
        "Python package is not installed)")
    assert transition_error_to_text("activate", KeyError("image")) == \
        "activate failed: KeyError: 'image'"
