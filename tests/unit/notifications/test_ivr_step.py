"""`ivr.step` on the push channel: a handed-over call's steps reach the agent who sent it
(and supervisors); a self-service call's reach supervisors only; never a key."""

from __future__ import annotations

from transact.contracts.ivr import IvrStep
from transact.notifications import domain

RULE = domain.RULES["ivr.step"]


def step(agent_id: str | None) -> IvrStep:
    return IvrStep(
        tenant_id="ten_1",
        session_id="ivs_1",
        call_id="CA1",
        flow="bills",
        stage="ended",
        previous="goodbye",
        payments=1,
        capture_id="pay_1",
        amount=4200,
        currency="GBP",
        reference="ORDER-42",
        outcome="paid",
        confirmation="042917",
        agent_id=agent_id,
        brand="visa",
        last4="4242",
    )


def test_a_handed_over_calls_outcome_reaches_its_agent() -> None:
    message = step("usr_alice")
    assert domain.named_agents(RULE, message) == ("usr_alice",)
    assert domain.streams_for("ten_1", domain.named_agents(RULE, message)) == [
        "agent:ten_1:usr_alice",
        "tenant:ten_1",
    ]
    view = domain.view(message)
    assert view is not None
    data = view["data"]
    assert (data["stage"], data["outcome"], data["brand"], data["last4"]) == (
        "ended",
        "paid",
        "visa",
        "4242",
    )
    assert data["confirmation"] == "042917"


def test_a_self_service_step_goes_to_supervisors_only() -> None:
    assert domain.named_agents(RULE, step(None)) == ()
    assert domain.streams_for("ten_1", ()) == ["tenant:ten_1"]


def test_card_numbers_in_free_text_are_masked() -> None:
    view = domain.view(step("usr_alice").model_copy(update={"reference": "4111111111111111"}))
    assert view is not None
    assert "4111111111111111" not in str(view)
