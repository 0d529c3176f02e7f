"""The replay's selection, as a pure function of triggers and history."""

from __future__ import annotations

from datetime import timedelta

from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import ActionEvent, Trigger, make_action_id, utcnow
from catcher.services.execution.replay import Only, plan_replay


def _trigger(rule: str, n: int) -> Trigger:
    return Trigger.create(
        rule, Severity.WARNING, reason="r", source=TriggerSource.manual, tags={"n": str(n)}
    )


def _event(
    trigger: Trigger, name: str, state: ActionState, minutes: int, gen: int = 0
) -> ActionEvent:
    return ActionEvent(
        action_id=make_action_id(trigger.trigger_id, name, gen),
        trigger_id=trigger.trigger_id,
        rule_id=trigger.rule_id,
        action_name=name,
        action_type="webhook",
        state=state,
        attempt=1,
        time=utcnow() + timedelta(minutes=minutes),
        severity="WARNING",
        generation=gen,
    )


def test_the_last_state_of_each_action_selects_it() -> None:
    a, b, c = _trigger("dome", 1), _trigger("dome", 2), _trigger("mount", 3)
    events = [
        _event(a, "hook", ActionState.failed, 1),
        _event(a, "hook", ActionState.succeeded, 5, gen=1),  # re-run since: not failed now
        _event(b, "hook", ActionState.failed, 2),
        _event(b, "page", ActionState.suppressed, 2),  # a cooldown: never replayed
        _event(c, "hook", ActionState.submitted, 3),
    ]
    failed = plan_replay([a, b, c], events, only=Only.failed)
    assert [(i.trigger.trigger_id, i.action_name) for i in failed] == [(b.trigger_id, "hook")]
    assert [i.action_name for i in plan_replay([a, b, c], events, only=Only.unfinished)] == [
        "hook"
    ]
    everything = plan_replay([a, b, c], events, only=Only.all)
    assert len(everything) == 3
    assert plan_replay([a, b, c], events, only=Only.all, rules=["mount"])[0].trigger == c
    assert plan_replay([a, b, c], events, only=Only.all, action="page") == []


def test_force_takes_the_next_generation_and_keeps_the_id_otherwise() -> None:
    a = _trigger("dome", 1)
    events = [
        _event(a, "hook", ActionState.failed, 1),
        _event(a, "hook", ActionState.failed, 4, gen=1),
    ]
    (plain,) = plan_replay([a], events, only=Only.failed)
    assert plain.action_id == make_action_id(a.trigger_id, "hook", 1)
    assert plain.what(force=False) == "deliver again; the ledger skips it (failed)"
    (forced,) = plan_replay([a], events, only=Only.failed, force=True)
    assert forced.action_id == make_action_id(a.trigger_id, "hook", 2)
    assert forced.what(force=True) == f"run again as {forced.action_id}"
    assert forced.to_json(force=True)["last_action_id"] == plain.action_id


def test_nothing_selected_without_history() -> None:
    assert plan_replay([_trigger("dome", 1)], [], only=Only.all) == []
